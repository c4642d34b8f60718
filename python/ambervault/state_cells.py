"""State cells: named values read and replaced by version (mixed into :class:`~ambervault.KVault`).

A state cell is an ordinary key whose every write is versioned: these are short names over the
versions and conditional writes every key already has (``version()``, ``put(if_version=,
if_absent=)``, :class:`~ambervault.Conflict`), returning the version a write produced. See
``docs/events.md``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from .exceptions import Conflict, InvalidArgument, NotFound

_MISSING: Any = object()


def _check_version(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected_version must be an int or None, not {type(value).__name__}")
    if value < 1:
        raise InvalidArgument(f"expected_version must be >= 1 (versions start at 1), not {value}")
    return value


class StateCellsMixin:
    """``state_init``, ``state_set``, ``state_cas`` and ``state_get`` of a KVault."""

    # The KVault methods used (``put``, ``get``, ``version``, ``info``) are called through an
    # ``Any`` view of ``self``, so their signatures stay KVault's own.

    def state_init(self, key: Any, value: Any) -> int:
        """Store ``value`` under ``key`` unless the key exists; returns the key's version (1 when
        this call created it). Of several processes initializing one cell, one value wins.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v.state_init("mode", "idle"), v.state_init("mode", "busy")
        (1, 1)
        >>> v["mode"]
        'idle'
        """
        kv: Any = self
        while True:
            try:
                kv.put(key, value, if_absent=True)
                return 1
            except Conflict:
                current: Optional[int] = kv.version(key)
                if current is not None:
                    return current
                # Deleted (or expired) between the write and the read: try again.

    def state_set(self, key: Any, value: Any) -> int:
        """Store ``value`` under ``key`` unconditionally; returns the version this write made.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v.state_set("mode", "idle"), v.state_set("mode", "busy")
        (1, 2)
        """
        kv: Any = self
        while True:
            version: Optional[int] = kv.version(key)
            try:
                if version is None:
                    kv.put(key, value, if_absent=True)
                    return 1
                kv.put(key, value, if_version=version)
                return version + 1
            except Conflict:
                continue  # another writer came between the read and the write

    def state_cas(self, key: Any, new: Any, expected_version: Optional[int]) -> Optional[int]:
        """Store ``new`` only if the key's version is ``expected_version`` (``None``: only if
        the key is absent); returns the new version, or ``None`` when the version differs (then
        nothing is written). Never raises :class:`~ambervault.Conflict`.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v.state_cas("n", 1, None), v.state_cas("n", 2, 5), v.state_cas("n", 2, 1)
        (1, None, 2)
        """
        expected = _check_version(expected_version)
        kv: Any = self
        try:
            if expected is None:
                kv.put(key, new, if_absent=True)
                return 1
            kv.put(key, new, if_version=expected)
            return expected + 1
        except Conflict:
            return None

    def state_get(self, key: Any, default: Any = _MISSING) -> Tuple[Any, int]:
        """``(value, version)`` of ``key``, read together: the version is the one of that value.
        A missing key raises :class:`~ambervault.NotFound` unless ``default`` is given, which
        is then returned as ``(default, 0)``.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v.state_set("mode", "idle"); v.state_get("mode")
        1
        ('idle', 1)
        """
        kv: Any = self
        while True:
            # The value and its version come from two reads: the metadata (version and write
            # times) is read before and after the value, and the pair is kept only if it did
            # not change in between.
            before = self._stamp(key)
            value = kv.get(key, _MISSING)
            after = self._stamp(key)
            if before != after:
                continue
            if after is None or value is _MISSING:
                if value is not _MISSING or after is not None:
                    continue  # created or deleted between the reads
                if default is _MISSING:
                    raise NotFound(key)
                return default, 0
            return value, after[0]

    def state_history(self, key: Any, limit: Optional[int] = None) -> List[Tuple[int, float, Any]]:
        """The cell's values, newest first, as ``(version, time, value)`` (with
        :data:`~ambervault.DELETED` where it was deleted): :meth:`KVault.history`. Earlier
        values are kept only when the vault keeps history (``KVault(history=...)``).

        >>> from ambervault import KVault
        >>> v = KVault(":memory:", history="all")
        >>> v.state_set("mode", "idle"); v.state_set("mode", "busy")
        1
        2
        >>> [(version, value) for version, _, value in v.state_history("mode")]
        [(2, 'busy'), (1, 'idle')]
        """
        kv: Any = self
        history: List[Tuple[int, float, Any]] = kv.history(key, limit)
        return history

    def _stamp(self, key: Any) -> Optional[Tuple[int, int, int]]:
        kv: Any = self
        meta = kv.info(key)
        if meta is None:
            return None
        return meta["version"], meta["created_at_ms"], meta["updated_at_ms"]
