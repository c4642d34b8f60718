"""A KVault as a cache: byte limits with eviction, a default TTL, deduplication of every
value, pruning by age and idleness, health figures (mixed into :class:`~ambervault.KVault`).

The policy is stored in the file, so every process and every later session applies it. See
``docs/cache.md``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from ._ambervault import KVaultCore
from ._file import check_int
from .exceptions import InvalidArgument
from .history import check_history, history_name, snapshot_figures
from .memoize import Memoized, memoize_decorator

EVICTION_POLICIES = (
    "none",
    "least-recently-stored",
    "least-recently-used",
    "least-frequently-used",
)
DEDUP_MODES = ("all", "large", "none")

_KEEP: Any = object()
F = TypeVar("F", bound=Callable[..., Any])


def check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A duration in seconds: a finite number, positive (or zero when allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise InvalidArgument(f"{name} must be a finite number of seconds, not {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "positive"
        raise InvalidArgument(f"{name} must be {bound}, not {value}")
    return float(value)


def check_policy_args(
    max_bytes: Any = None,
    eviction: Any = None,
    dedup: Any = None,
    default_ttl: Any = None,
    auto_prune: Any = None,
) -> None:
    """Checks cache arguments before anything is opened or written (None: not given)."""
    if max_bytes is not None and check_int("max_bytes", max_bytes) < 0:
        raise InvalidArgument(f"max_bytes must be >= 0, not {max_bytes}")
    if eviction is not None and eviction not in EVICTION_POLICIES:
        raise InvalidArgument(
            f"unknown eviction policy {eviction!r}; expected one of {', '.join(EVICTION_POLICIES)}"
        )
    if dedup is not None and dedup not in DEDUP_MODES:
        raise InvalidArgument(f"unknown dedup mode {dedup!r}; expected one of {DEDUP_MODES}")
    if default_ttl is not None:
        check_seconds("default_ttl", default_ttl)
    if auto_prune is not None:
        check_seconds("auto_prune", auto_prune)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class CachePolicyMixin:
    """Cache limits and figures of a :class:`~ambervault.KVault` (see the module docs)."""

    _default_ttl_ms: Optional[int]

    @property
    def _native(self) -> KVaultCore:  # pragma: no cover - provided by KVault
        raise NotImplementedError

    def _sync_writes(self) -> None:  # pragma: no cover - provided by KVault
        raise NotImplementedError

    def _adopt_policy(self) -> Dict[str, Any]:
        limits = self.limits()
        ttl = limits["default_ttl"]
        self._default_ttl_ms = None if ttl is None else _ms(ttl)
        return limits

    @property
    def default_ttl(self) -> Optional[float]:
        """Seconds a write lives when it gives no ``ttl`` (``None``: forever). Stored in the
        file; assigning it is :meth:`set_limits` with ``default_ttl``."""
        return None if self._default_ttl_ms is None else self._default_ttl_ms / 1000

    @default_ttl.setter
    def default_ttl(self, seconds: Optional[float]) -> None:
        self.set_limits(default_ttl=seconds)

    def limits(self) -> Dict[str, Any]:
        """The stored cache policy: ``max_bytes`` (None: unbounded), ``eviction``,
        ``default_ttl`` (seconds or None) and ``dedup``.

        >>> from ambervault import KVault
        >>> limits = KVault(":memory:", max_bytes=1 << 20, eviction="least-recently-used").limits()
        >>> limits["max_bytes"], limits["eviction"], limits["default_ttl"], limits["history"]
        (1048576, 'least-recently-used', None, 0)
        """
        max_bytes, eviction, ttl_ms, dedup, *_, history = self._native.cache_policy()
        return {
            "max_bytes": max_bytes,
            "eviction": eviction,
            "default_ttl": None if ttl_ms is None else ttl_ms / 1000,
            "dedup": dedup,
            "history": history_name(history),
        }

    def set_limits(
        self,
        *,
        max_bytes: Optional[int] = _KEEP,
        eviction: str = _KEEP,
        default_ttl: Optional[float] = _KEEP,
        dedup: str = _KEEP,
        history: Any = _KEEP,
    ) -> Dict[str, Any]:
        """Change the stored cache policy; arguments not given keep their value, ``None``
        removes a limit or default TTL. When the vault is over a new limit, entries are evicted
        at once. Returns :meth:`limits`.

        :param max_bytes: most bytes stored for values (after deduplication, as
            :meth:`stats` reports ``stored_bytes``).
        :param eviction: which entries go first over the limit: ``"least-recently-stored"``,
            ``"least-recently-used"``, ``"least-frequently-used"`` or ``"none"`` (the limit is
            only reported).
        :param default_ttl: seconds a write lives when it gives no ``ttl``.
        :param dedup: ``"large"`` (values larger than the inline limit share chunks; the
            default), ``"all"`` (small values are stored once per content too) or ``"none"``.
        :param history: earlier versions kept per key (``0``, a count or ``"all"``); lowering
            it drops the versions beyond it, ``0`` drops them all. Not with a byte limit.
        """
        history_code = None if history is _KEEP else check_history(history)
        check_policy_args(
            max_bytes=None if max_bytes is _KEEP else max_bytes,
            eviction=None if eviction is _KEEP else eviction,
            dedup=None if dedup is _KEEP else dedup,
            default_ttl=None if default_ttl is _KEEP else default_ttl,
        )
        self._sync_writes()
        self._native.set_cache_policy(
            set_max_bytes=max_bytes is not _KEEP,
            max_bytes=None if max_bytes is _KEEP else max_bytes,
            eviction=None if eviction is _KEEP else eviction,
            set_default_ttl=default_ttl is not _KEEP,
            default_ttl_ms=None if default_ttl in (_KEEP, None) else _ms(default_ttl),
            dedup=None if dedup is _KEEP else dedup,
            history=history_code,
        )
        return self._adopt_policy()

    def prune(self, max_age: Optional[float] = None, max_idle: Optional[float] = None) -> int:
        """Delete expired keys, and with ``max_age`` keys written more than that many seconds
        ago, with ``max_idle`` keys not used (read or written) for that long. Returns how
        many keys went. Reads count as uses only while they are tracked (eviction
        ``"least-recently-used"`` or ``"least-frequently-used"``); otherwise a key's last use
        is its last write.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v["k"] = b"v"; v.prune(max_age=0)
        1
        """
        age = None if max_age is None else check_seconds("max_age", max_age, allow_zero=True)
        idle = None if max_idle is None else check_seconds("max_idle", max_idle, allow_zero=True)
        self._sync_writes()
        return self._native.prune_by(
            None if age is None else int(age * 1000), None if idle is None else int(idle * 1000)
        )

    def expire(self) -> int:
        """Delete every expired key (they are already invisible); returns how many (diskcache's
        name for :meth:`prune` without arguments)."""
        return self.prune()

    def count_unique_values(self) -> int:
        """Number of distinct values among the live keys (values stored the same way with the
        same bytes count once)."""
        self._sync_writes()
        return self._native.count_unique_values()

    def sweep(self) -> int:
        """Drop stored contents that no key refers to (recounting references first); returns
        how many. Writes never leave such contents behind; this repairs files damaged or
        written by other programs."""
        self._sync_writes()
        return self._native.sweep()

    def _cache_figures(self, keys: int) -> Dict[str, Any]:
        max_bytes, eviction, _, dedup, _, evictions, hits, misses, _ = self._native.cache_policy()
        unique = self._native.count_unique_values()
        looked_up = hits + misses
        return {
            "unique_values": unique,
            "dedup_ratio": keys / unique if unique else 1.0,
            "max_bytes": max_bytes,
            "eviction": eviction,
            "dedup": dedup,
            "evictions": evictions,
            "hits": hits,
            "misses": misses,
            "hit_ratio": hits / looked_up if looked_up else None,
        }

    def _history_figures(self) -> Dict[str, Any]:
        rows, nbytes = self._native.history_stats()
        path: str = self.path  # type: ignore[attr-defined]
        return {"history_rows": rows, "history_bytes": nbytes, **snapshot_figures(path)}

    def get_health(self) -> Dict[str, Any]:
        """Figures under Prestige's names: ``total_keys``, ``total_objects`` (distinct stored
        values), ``total_bytes`` (stored bytes after deduplication) and ``dedup_ratio`` (keys
        per distinct value)."""
        stats: Dict[str, Any] = self.stats()  # type: ignore[attr-defined]
        return {
            "total_keys": stats["keys"],
            "total_objects": stats["unique_values"],
            "total_bytes": stats["stored_bytes"],
            "dedup_ratio": stats["dedup_ratio"],
        }

    def memoize(
        self, ttl: Optional[float] = None, typed: bool = False, ignore: Tuple[Any, ...] = ()
    ) -> Callable[[F], Memoized]:
        """Decorator caching a function's results in this vault, like diskcache's
        ``Cache.memoize``. The key is the function's qualified name and its arguments in the
        typed-value encoding (never pickled: arguments that cannot be encoded raise
        ``TypeError``); results are stored as typed values.

        :param ttl: seconds a result lives (default: the vault's ``default_ttl``).
        :param typed: arguments of different types (``1`` and ``1.0``) are cached apart.
        :param ignore: positions or keyword names of arguments left out of the key.

        The wrapper has ``.cache_key(*args, **kwargs)`` and ``__wrapped__``. Two processes
        calling it first at the same time may both compute; one result is stored.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:")
        >>> @v.memoize()
        ... def square(x):
        ...     return x * x
        >>> square(4), square(4)
        (16, 16)
        """
        if callable(ttl):
            raise TypeError("memoize() must be called: use @vault.memoize(), not @vault.memoize")
        if ttl is not None:
            check_seconds("ttl", ttl)
        return memoize_decorator(self, ttl, typed, ignore)
