"""Explicit transactions spanning KV writes, streams and column operations."""

from __future__ import annotations

from typing import Any, List

from .cache import BatchingCache
from .exceptions import ClosedError


class Transaction:
    """An open transaction on a vault's connection (see :meth:`KVault.transaction`).

    Everything written through the vault, its streams and the columns of a
    ``ColumnVault(kv)`` between the start and :meth:`commit` is atomic: all of it becomes
    visible at commit, none of it after :meth:`rollback`, an exception in the ``with`` block,
    or a crash. Reads inside see the transaction's own writes; other connections see none of
    them before commit. Nested transactions are savepoints. While it is open, other threads
    using the same vault wait for it to end.

    Write-back caches are flushed when the transaction starts, flushed *into* it at commit,
    and their transaction-time contents dropped on rollback.
    """

    def __init__(self, native: Any, caches: List[BatchingCache]) -> None:
        self._native = native
        self._caches = caches
        self._open = False
        for cache in caches:
            cache.acquire()  # no background flush may interleave with the transaction
        try:
            for cache in caches:
                cache.flush()
            native.begin()
        except BaseException:
            self._release()
            raise
        self._open = True

    def _release(self) -> None:
        for cache in reversed(self._caches):
            cache.release()
        self._caches = []

    @property
    def active(self) -> bool:
        """Whether the transaction is still open."""
        return self._open

    def commit(self) -> None:
        """Make every write of the transaction visible, atomically."""
        if not self._open:
            raise ClosedError("transaction is already finished")
        self._open = False
        try:
            for cache in self._caches:
                cache.flush()
        except BaseException:
            self._native.rollback()
            self._release()
            raise
        try:
            self._native.commit()
        finally:
            self._release()

    def rollback(self) -> None:
        """Discard every write of the transaction."""
        if not self._open:
            raise ClosedError("transaction is already finished")
        self._open = False
        try:
            for cache in self._caches:
                cache.discard_pending()
            self._native.rollback()
        finally:
            self._release()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._open:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __del__(self) -> None:
        # An abandoned transaction must not keep the connection (and other threads) locked.
        if getattr(self, "_open", False):
            try:
                self.rollback()
            except Exception:
                pass
