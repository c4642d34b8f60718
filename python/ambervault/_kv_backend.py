"""The two ways a KVault reaches its table: straight to the native table, or through a
write-back cache in front of it. Both have one interface, so :class:`~ambervault.KVault`
delegates without asking which one it has (the pattern of diskcache's ``Index`` over ``Cache``).

Every method takes keys as the user gave them; the native layer checks them. Values arrive
encoded (bytes plus an encoding code, see ``_codec.py``) and leave decoded. The cached backend
needs raw keys and immutable values for its dict, and gets them from the same native checks.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

from ._ambervault import BlobWriterCore, KVaultCore
from ._args import raw_key_bytes
from .cache import WriteBackCache
from .exceptions import DatabaseBusy

#: What the native table returns for a value: raw bytes, or ``(encoding, bytes)``.
Stored = Union[bytes, Tuple[int, bytes]]
#: Decodes ``(encoding, bytes)`` into the value.
Decode = Callable[[int, bytes], Any]


class DirectBackend:
    """Every operation goes to the native table at once."""

    #: The write-back cache, if any.
    cache: Optional[WriteBackCache] = None
    #: The cache's native ``put(key, value) -> bool``, bound once for ``vault[k] = v``'s bulk
    #: path (two attribute lookups and a bound-method object fewer per put); None without a
    #: cache.
    cached_put: Optional[Callable[[Any, bytes], bool]] = None

    def __init__(self, core: KVaultCore, decode: Decode) -> None:
        self.core = core
        self.decode = decode

    def value(self, stored: Optional[Stored], default: Any = None) -> Any:
        """The value a native read returned, decoded (``default`` when absent)."""
        if stored is None:
            return default
        if type(stored) is tuple:
            return self.decode(*stored)
        return stored

    def put(
        self,
        key: Any,
        value: Any,
        expires: Optional[int],
        if_version: Optional[int],
        if_absent: bool,
        encoding: int,
    ) -> None:
        """Store one encoded value (conditionally with ``if_version`` / ``if_absent``)."""
        self.core.put(key, value, expires, if_version, if_absent, encoding)

    def get(self, key: Any, default: Any) -> Any:
        """The value, decoded, or ``default``."""
        # `value()` written out: this is every uncached get, and a call costs more than the body.
        stored = self.core.get(key)
        if stored is None:
            return default
        if type(stored) is tuple:
            return self.decode(*stored)
        return stored

    def exists(self, key: Any) -> bool:
        """Whether the key is present."""
        return self.core.exists(key)

    def delete(self, key: Any) -> bool:
        """Remove the key; whether it existed."""
        return self.core.delete(key)

    def put_many(
        self, pairs: List[Any], expires: Optional[int], encode: Callable[[Any], Tuple[Any, int]]
    ) -> None:
        """Store ``(key, value)`` pairs in one transaction, each value encoded by ``encode``
        (bytes as they are) before anything is written."""
        self.core.put_many(pairs, expires, encode)

    def get_many(self, keys: List[Any], default: Any = None) -> List[Any]:
        """Values of ``keys``, decoded (``default`` where absent)."""
        return [self.value(stored, default) for stored in self.core.get_many(keys)]

    def clear(self) -> None:
        """Remove every key."""
        self.core.clear()

    def finish_writer(self, writer: BlobWriterCore, key: Any, expires: Optional[int]) -> int:
        """Make a streamed (raw) value visible under ``key``."""
        return writer.finish(key, expires)

    def sync_key(self, key: Any) -> None:
        """Make the native table current for ``key`` (nothing to do here)."""

    def sync(self) -> None:
        """Make the native table current for every key (nothing to do here)."""


class CachedBackend(DirectBackend):
    """Writes are held in a :class:`WriteBackCache` and written in batches; reads see them."""

    def __init__(
        self, core: KVaultCore, decode: Decode, cache: WriteBackCache, now_ms: Callable[[], int]
    ) -> None:
        super().__init__(core, decode)
        self.cache = cache
        # Bound through the cache, which binds it again when a fork child replaces its buffer.
        cache.bind_put(self)
        self._now_ms = now_ms

    def _live(self, entry: Tuple[Any, bytes, Optional[int], int]) -> bool:
        return entry[2] is None or entry[2] > self._now_ms()

    def _cached_value(self, entry: Tuple[Any, bytes, Optional[int], int], default: Any) -> Any:
        if not self._live(entry):
            return default
        # Decoded afresh on every read, as a read from the table would be.
        return entry[1] if entry[3] == 0 else self.decode(entry[3], entry[1])

    def put(
        self,
        key: Any,
        value: Any,
        expires: Optional[int],
        if_version: Optional[int],
        if_absent: bool,
        encoding: int,
    ) -> None:
        cache = self.cache
        assert cache is not None
        if if_version is not None or if_absent:
            # A condition is decided by the table: write through, then drop the cached older
            # write (kept if the write is refused).
            raw = raw_key_bytes(key)
            with cache.lock:
                self.core.put(key, value, expires, if_version, if_absent, encoding)
                cache.discard(raw)
            return
        # Native: checks the key and value, snapshots a mutable value, flushes as needed.
        if not cache._buffer.put(key, value, expires, encoding):
            self.core.put(key, value, expires, None, False, encoding)

    def get(self, key: Any, default: Any) -> Any:
        assert self.cache is not None
        entry = self.cache.entry(raw_key_bytes(key))
        if entry is not None:
            return self._cached_value(entry, default)
        return super().get(key, default)

    def exists(self, key: Any) -> bool:
        assert self.cache is not None
        entry = self.cache.entry(raw_key_bytes(key))
        if entry is not None:
            return self._live(entry)
        return self.core.exists(key)

    def delete(self, key: Any) -> bool:
        cache = self.cache
        assert cache is not None
        raw = raw_key_bytes(key)
        with cache.lock:
            existed = self.core.delete(key)
            return cache.discard(raw) or existed

    def put_many(
        self, pairs: List[Any], expires: Optional[int], encode: Callable[[Any], Tuple[Any, int]]
    ) -> None:
        cache = self.cache
        assert cache is not None
        # Raw keys first: a bad key raises before anything is written or dropped.
        raws = [raw_key_bytes(pair[0]) for pair in pairs if isinstance(pair, tuple) and pair]
        with cache.lock:
            if cache.locked:
                # A batch is written at once, around the cache whose writes the block holds
                # back; refused, as kohakuvault does, rather than landing before them.
                raise DatabaseBusy("put_many/update are refused while the cache is locked (lock_cache())")
            self.core.put_many(pairs, expires, encode)
            # The batch is newer than any cached write of its keys.
            for raw in raws:
                cache.discard(raw)

    def get_many(self, keys: List[Any], default: Any = None) -> List[Any]:
        assert self.cache is not None
        values = super().get_many(keys, default)
        for i, key in enumerate(keys):
            entry = self.cache.entry(raw_key_bytes(key))
            if entry is not None:
                values[i] = self._cached_value(entry, default)
        return values

    def clear(self) -> None:
        assert self.cache is not None
        self.cache.clear()
        self.core.clear()

    def finish_writer(self, writer: BlobWriterCore, key: Any, expires: Optional[int]) -> int:
        cache = self.cache
        assert cache is not None
        raw = raw_key_bytes(key)
        with cache.lock:
            written = writer.finish(key, expires)
            # A cached older write must not land after (and over) the streamed value.
            cache.discard(raw)
            return written

    def sync_key(self, key: Any) -> None:
        assert self.cache is not None
        if raw_key_bytes(key) in self.cache:
            self.cache.flush()

    def sync(self) -> None:
        assert self.cache is not None
        self.cache.flush()


class ClosedBackend:
    """The backend of a closed branch handle: every operation raises ``ClosedError`` (the
    file stays open for the table's other handles, so the native calls would still work)."""

    #: No write-back cache.
    cache: Optional[WriteBackCache] = None
    cached_put: Optional[Callable[[Any, bytes], bool]] = None

    def __getattr__(self, name: str) -> Any:
        from .exceptions import ClosedError

        raise ClosedError("vault is closed")
