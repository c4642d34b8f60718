"""Time in a KVault: value history, reads by version and by time, and consistent snapshots
(mixed into :class:`~ambervault.KVault`). See ``docs/history.md``."""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from ._ambervault import KVaultCore
from .exceptions import InvalidArgument, NotFound

if TYPE_CHECKING:
    from .columns import ColumnVault
    from .kvault import KVault

_PAGE = 1000
#: A snapshot older than this shows as a warning in ``stats()``.
OLD_SNAPSHOT_SECONDS = 60.0
_OPEN_SNAPSHOTS: weakref.WeakSet[Snapshot] = weakref.WeakSet()


def snapshot_figures(path: str) -> Dict[str, Any]:
    """``open_snapshots`` and ``oldest_snapshot_age`` (seconds) of this process's snapshots of
    ``path``, and a warning when one is older than :data:`OLD_SNAPSHOT_SECONDS`."""
    ages = [s.age for s in list(_OPEN_SNAPSHOTS) if s.path == path and not s.kv.closed]
    oldest = max(ages) if ages else None
    figures: Dict[str, Any] = {"open_snapshots": len(ages), "oldest_snapshot_age": oldest}
    if oldest is not None and oldest > OLD_SNAPSHOT_SECONDS:
        figures["warnings"] = [
            f"a snapshot has been open for {oldest:.0f} s: the WAL cannot be checkpointed past "
            "it and grows until it is closed"
        ]
    return figures


class _Deleted:
    """The value of a history entry that records a deletion (or expiry)."""

    _instance: Optional[_Deleted] = None

    def __new__(cls) -> _Deleted:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ambervault.DELETED"

    def __reduce__(self) -> str:
        return "DELETED"


#: The value of a tombstone in :meth:`KVault.history`: the key was deleted (or expired) then.
DELETED = _Deleted()


def check_history(history: Any) -> int:
    """The stored code of a history setting: ``"all"`` (-1), ``0`` (off) or a count."""
    if history == "all":
        return -1
    if isinstance(history, bool) or not isinstance(history, int):
        raise TypeError(f"history must be 'all' or an int, not {history!r}")
    if history < 0:
        raise InvalidArgument(f"history must be 'all', 0 or a positive count, not {history}")
    if history >= 1 << 31:
        raise InvalidArgument(f"history count {history} is too large")
    return history


def history_name(code: int) -> Any:
    """The user's form of a stored history code."""
    return "all" if code == -1 else code


def _check_time(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise TypeError(f"{name} must be epoch seconds (a number), not {value!r}")
    return float(value)


class HistoryMixin:
    """History, version and time reads of a :class:`~ambervault.KVault`."""

    @property
    def _native(self) -> KVaultCore:  # pragma: no cover - provided by KVault
        raise NotImplementedError

    def _sync_writes(self) -> None:  # pragma: no cover - provided by KVault
        raise NotImplementedError

    def _decoded(self, stored: Any) -> Any:
        if type(stored) is tuple:
            return self._codec.decode(*stored)  # type: ignore[attr-defined]
        return stored

    def history(self, key: Any, limit: Optional[int] = None) -> List[Tuple[int, float, Any]]:
        """The key's values, newest first, as ``(version, time, value)``: the current value
        (if any), then every earlier version the table keeps (``KVault(history=...)``), with
        ``(version, time, DELETED)`` where a delete or expiry ended a version. ``time`` is
        epoch seconds by the vault's clock (the write's, or the deletion's). ``limit`` counts
        values, not tombstones. Without history, only the current value.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:", history="all")
        >>> v["k"] = "one"; v["k"] = "two"
        >>> [(version, value) for version, _, value in v.history("k")]
        [(2, 'two'), (1, 'one')]
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidArgument(f"limit must be an int >= 0, not {limit!r}")
        self._sync_writes()
        entries = []
        for kind, version, at_ms, stored in self._native.history(key, limit):
            value = DELETED if kind != "value" else self._decoded(stored)
            entries.append((version, at_ms / 1000, value))
        return entries

    def get_version(self, key: Any, version: int, default: Any = None) -> Any:
        """The value ``key`` had at ``version`` (current or kept), or ``default``. Version
        numbers restart at 1 after a delete; the newest version with the number is returned."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version must be an int, not {type(version).__name__}")
        self._sync_writes()
        stored = self._native.get_version(key, version)
        return default if stored is None else self._decoded(stored)

    def as_of(self, when: float) -> AsOfView:
        """A read-only view of the table at ``when`` (epoch seconds, as the vault's clock read):
        the keys that existed then, with their values then. Exact for times the kept history
        covers; versions dropped by the history limit (or written with history off) are
        missing from it."""
        return AsOfView(self, _check_time("when", when))  # type: ignore[arg-type]

    def prune_history(self, keep: Optional[int] = None, older_than: Optional[float] = None) -> int:
        """Drop kept versions beyond the newest ``keep`` per key, and those that ended more
        than ``older_than`` seconds ago; returns how many went (their storage is released)."""
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
            raise InvalidArgument(f"keep must be an int >= 0, not {keep!r}")
        age = None
        if older_than is not None:
            age = _check_time("older_than", older_than)
            if age < 0 or age == float("inf"):
                raise InvalidArgument(f"older_than must be a finite number >= 0, not {older_than}")
        self._sync_writes()
        return self._native.prune_history(keep, None if age is None else int(age * 1000))

    def snapshot(self) -> Snapshot:
        """A consistent read-only view of the file (this table and the columns) as of now,
        while other threads and processes keep writing. Use it as a context manager::

            with vault.snapshot() as snap:
                snap["k"], snap.columns["loss"][-1]

        It holds a read transaction on a connection of its own: the WAL cannot be checkpointed
        past it, so it grows while the snapshot stays open (``stats()`` reports
        ``oldest_snapshot_age``). In-memory vaults have no file to open twice: refused."""
        kv: KVault = self  # type: ignore[assignment]
        if kv.path == ":memory:":
            raise InvalidArgument("an in-memory vault cannot be snapshotted (it has no file)")
        self._sync_writes()
        return Snapshot(kv)


class AsOfView:
    """The keys and values of a KVault table at one moment (see :meth:`KVault.as_of`)."""

    def __init__(self, vault: KVault, when: float) -> None:
        self._vault = vault
        self._at_ms = int(when * 1000)
        self.time = when

    def get(self, key: Any, default: Any = None) -> Any:
        """The value ``key`` had then, or ``default``."""
        stored = self._vault._native.get_as_of(key, self._at_ms)
        return default if stored is None else self._vault._decoded(stored)

    def __getitem__(self, key: Any) -> Any:
        stored = self._vault._native.get_as_of(key, self._at_ms)
        if stored is None:
            raise NotFound(key)
        return self._vault._decoded(stored)

    def __contains__(self, key: object) -> bool:
        return self._vault._native.get_as_of(key, self._at_ms) is not None

    def keys(self) -> Iterator[Any]:
        """The keys that existed then, in key order."""
        after: Optional[bytes] = None
        while True:
            keys, after = self._vault._native.keys_as_of(self._at_ms, after, _PAGE)
            if not keys:
                return
            yield from keys

    __iter__ = keys

    def items(self) -> Iterator[Tuple[Any, Any]]:
        """``(key, value then)`` pairs in key order."""
        for key in self.keys():
            yield key, self[key]

    def values(self) -> Iterator[Any]:
        """The values then, in key order."""
        for _, value in self.items():
            yield value

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def __repr__(self) -> str:
        return f"<ambervault.AsOfView {self._vault.table!r} at {self.time}>"


class Snapshot:
    """A consistent read-only view of a vault file (see :meth:`KVault.snapshot`): ``snap[k]``,
    ``get``, ``keys``/``items``/``values``, ``len`` and ``in`` read the vault's table as of
    the snapshot; ``snap.columns`` is a read-only ColumnVault at the same moment."""

    def __init__(self, vault: KVault) -> None:
        from .columns import ColumnVault
        from .kvault import KVault

        self.kv = KVault(
            vault.path,
            table=vault.table,
            chunk_size=vault.chunk_size,
            read_only=True,
            allow_pickle=vault._codec.allow_pickle,
            # The vault's clock decides expiry in the snapshot too (an injected clock included).
            clock=vault._clock,
            key=vault._file.open_args["key"],
        )
        # The handle that owns the snapshot's connection (self.kv is on the vault's branch).
        self._owner = self.kv
        try:
            self.kv._file.native.begin_snapshot()
            if vault.branch_name != "main":
                self.kv = self.kv.branch(vault.branch_name)
        except BaseException:
            self._owner.close()
            raise
        self.started = time.monotonic()
        self.path = vault.path
        _OPEN_SNAPSHOTS.add(self)
        self._columns: Optional[ColumnVault] = None
        self._column_vault = ColumnVault

    @property
    def columns(self) -> ColumnVault:
        """The file's columns as of the snapshot."""
        if self._columns is None:
            self._columns = self._column_vault(self.kv)
        return self._columns

    @property
    def age(self) -> float:
        """Seconds since the snapshot was taken."""
        return time.monotonic() - self.started

    def __getitem__(self, key: Any) -> Any:
        return self.kv[key]

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key`` in the snapshot, or ``default``."""
        return self.kv.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.kv

    def __len__(self) -> int:
        return len(self.kv)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.kv)

    def keys(self, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`KVault.keys`, in the snapshot."""
        return self.kv.keys(*args, **kwargs)

    def items(self, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`KVault.items`, in the snapshot."""
        return self.kv.items(*args, **kwargs)

    def values(self, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`KVault.values`, in the snapshot."""
        return self.kv.values(*args, **kwargs)

    def close(self) -> None:
        """End the snapshot (the WAL can be checkpointed again). Idempotent."""
        owner = self._owner
        if not owner.closed:
            try:
                owner._file.native.commit()
            finally:
                owner.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


__all__ = ["DELETED", "AsOfView", "HistoryMixin", "Snapshot", "check_history", "history_name"]
