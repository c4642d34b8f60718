"""Streaming views of a KVault's keys, values and items, with their scan filters."""

from __future__ import annotations

import collections.abc
from typing import TYPE_CHECKING, Any, Iterator, Optional, Tuple, Union

from ._args import check_limit, raw_key_bytes

if TYPE_CHECKING:
    from .kvault import KVault

Key = Union[str, bytes, Tuple[Any, ...]]
_MISSING: Any = object()


class Range:
    """Filters of a scan: prefix, [start, end), limit, direction."""

    __slots__ = ("end", "limit", "prefix", "reverse", "start")

    def __init__(
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
    ) -> None:
        for bound in (prefix, start, end):
            if bound is not None:
                raw_key_bytes(bound)
        self.prefix, self.start, self.end = prefix, start, end
        self.limit = check_limit(limit)
        self.reverse = bool(reverse)

    def matches(self, key: Any) -> bool:
        raw = raw_key_bytes(key)
        if self.prefix is not None and not raw.startswith(raw_key_bytes(self.prefix)):
            return False
        if self.start is not None and raw < raw_key_bytes(self.start):
            return False
        return self.end is None or raw < raw_key_bytes(self.end)


class _ScanView:
    """Shared state of the key, value and item views: a vault plus scan filters."""

    def __init__(self, vault: KVault, rng: Range) -> None:
        self._vault = vault
        self._range = rng

    def __len__(self) -> int:
        rng = self._range
        n = self._vault._count(rng.prefix, rng.start, rng.end)
        return n if rng.limit is None else min(n, rng.limit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class KeysView(_ScanView, collections.abc.KeysView):  # type: ignore[type-arg]
    """Streaming view of a vault's keys (see :meth:`KVault.keys`)."""

    def __iter__(self) -> Iterator[Key]:
        return self._vault._iter_keys(self._range)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, bytes, tuple)) or not self._range.matches(key):
            return False
        if self._range.limit is None:
            return key in self._vault
        return any(raw_key_bytes(k) == raw_key_bytes(key) for k in self)


class ValuesView(_ScanView, collections.abc.ValuesView):  # type: ignore[type-arg]
    """Streaming view of a vault's values (see :meth:`KVault.values`)."""

    def __iter__(self) -> Iterator[bytes]:
        for _, value in self._vault._iter_items(self._range):
            yield value

    def __contains__(self, value: object) -> bool:
        return any(v == value for v in self)


class ItemsView(_ScanView, collections.abc.ItemsView):  # type: ignore[type-arg]
    """Streaming view of a vault's ``(key, value)`` pairs (see :meth:`KVault.items`)."""

    def __iter__(self) -> Iterator[Tuple[Key, bytes]]:
        return self._vault._iter_items(self._range)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        key, value = item
        if not isinstance(key, (str, bytes, tuple)) or not self._range.matches(key):
            return False
        return self._vault.get(key, _MISSING) == value
