"""VaultFile: the one open vault file that KVault, ColumnVault (and every later table kind)
share: its path and open options, the native handle, the closed state, the clock, explicit
transactions, file-level maintenance, and the fork/atexit handling of the tables' caches.

A table attaches itself to its file and provides ``_caches()`` (its write-back caches, flushed
before file-level operations and into transactions) and ``_stop_caches()`` (flush and stop them,
before the file closes).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Protocol, TypeVar, Union

from ._ambervault import TEST_HOOKS, VaultCore
from ._ambervault import encryption_available as _native_encryption_available
from .cache import BatchingCache
from .exceptions import ClosedError
from .transaction import Transaction


class Table(Protocol):
    """What a table kind provides to the file it is attached to."""

    def _caches(self) -> List[BatchingCache]: ...

    def _stop_caches(self) -> None: ...


# Files open in this process: their tables' caches are dropped in fork children (the parent
# flushes them) and flushed at exit.
_LIVE: weakref.WeakSet[VaultFile] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for file in list(_LIVE):
        for cache in file.caches():
            cache.forget_after_fork()


def _flush_all_at_exit() -> None:
    for file in list(_LIVE):
        for cache in file.caches():
            with contextlib.suppress(Exception):
                cache.stop_daemon()
                cache.flush()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_all_at_exit)


def check_int(name: str, value: Any) -> int:
    """``value`` if it is an int (not a bool), else ``TypeError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


class HiddenKey:
    """A vault key as open arguments keep it (for pickling and reopening): its value never
    shows in ``repr()`` or ``str()``, so printing a vault's open arguments, a data loader's
    state or a traceback's locals does not print the key. Pickling keeps the value: a pickled
    vault reopens with its key (see ``docs/encryption.md``)."""

    __slots__ = ("value",)

    def __init__(self, value: Union[str, bytes]) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<ambervault key (hidden)>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HiddenKey) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __reduce__(self) -> Any:
        return (HiddenKey, (self.value,))


#: A key argument: a str passphrase, 32 raw key bytes, or a key kept by open arguments.
KeyArg = Union[str, bytes, bytearray, memoryview, HiddenKey, None]


def key_value(key: Any) -> Union[str, bytes, None]:
    """The value of a key argument: ``None``, a ``str`` passphrase, or raw key ``bytes``
    (bytes-like values copied). Other types are left to the native check (``TypeError``)."""
    if isinstance(key, HiddenKey):
        return key.value
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    return key  # type: ignore[no-any-return]


def encryption_available() -> bool:
    """Whether this build of ambervault can open encrypted vaults (``key=``). Encryption is a
    build option (the ``encryption`` feature: SQLCipher in place of SQLite); a build without it
    refuses ``key=`` with :class:`~ambervault.EncryptionUnavailableError` and creates nothing.
    See ``docs/encryption.md``.

    >>> isinstance(encryption_available(), bool)
    True
    """
    return _native_encryption_available()


#: Test builds only (``make develop``, ``make test-encryption``): every vault file opened without
#: a key gets this one (a passphrase, or ``raw:`` and 64 hex digits), so the crash, power-loss
#: and bad-input suites run unchanged against encrypted files. Release wheels ignore it.
TEST_KEY_ENV = "AMBERVAULT_TEST_KEY"

#: Bytes of a file SQLite may memory-map by default: whole files (pages past the map cost a
#: read call each; the map uses address space, not memory, until pages are read).
DEFAULT_MMAP_BYTES = 1 << 40


def test_key() -> Union[str, bytes, None]:
    """The key of ``AMBERVAULT_TEST_KEY`` in a test build, else None."""
    text = os.environ.get(TEST_KEY_ENV) if TEST_HOOKS else None
    if not text:
        return None
    if text.startswith("raw:"):
        return bytes.fromhex(text[4:])
    return text


def fspath(path: Any, what: str = "path must be str or os.PathLike") -> str:
    """A path argument as ``str`` (bytes paths decoded as the file system does)."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"{what}, not {type(path).__name__}") from None


class VaultFile:
    """One open vault file, shared by the tables on it. Not part of the public API: users open
    a :class:`~ambervault.KVault` or :class:`~ambervault.ColumnVault`, and
    ``ColumnVault(kv)`` shares ``kv``'s file.

    :param clock: a callable returning epoch seconds, used instead of the system clock for every
        timestamp and expiry decision of every table on the file.
    :param checkpoints: ``"auto"`` (ambervault checkpoints the WAL) or ``"external"`` (a program
        following the WAL, such as Litestream, does; see ``docs/replication.md``).
    :param key: the key of an encrypted file: a ``str`` passphrase or 32 raw ``bytes`` (see
        ``docs/encryption.md``); ``None`` for a plain file.
    :param plain: a file that is never encrypted by ``AMBERVAULT_TEST_KEY`` (bundles, which are
        plain files whatever the vault they came from).
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        retries: int = 4,
        backoff_base: float = 0.02,
        enable_wal: bool = True,
        page_size: int = 4096,
        mmap_size: int = DEFAULT_MMAP_BYTES,
        cache_kb: int = 20000,
        read_only: bool = False,
        synchronous: str = "normal",
        clock: Optional[Callable[[], float]] = None,
        checkpoints: str = "auto",
        key: KeyArg = None,
        plain: bool = False,
    ) -> None:
        self._core: Optional[VaultCore] = None
        key = key_value(key)
        if key is None and not plain and path != ":memory:":
            key = test_key()
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        path = fspath(path)
        for name, text in (("synchronous", synchronous), ("checkpoints", checkpoints)):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, not {type(text).__name__}")
        for name, value in (
            ("retries", retries),
            ("page_size", page_size),
            ("mmap_size", mmap_size),
            ("cache_kb", cache_kb),
        ):
            check_int(name, value)
        if isinstance(backoff_base, bool) or not isinstance(backoff_base, (int, float)):
            raise TypeError(f"backoff_base must be a number, not {type(backoff_base).__name__}")
        self.path = path
        self.clock = clock
        #: The arguments that reopen this file (for pickling tables on it).
        self.open_args: Dict[str, Any] = dict(
            retries=retries,
            backoff_base=backoff_base,
            enable_wal=bool(enable_wal),
            page_size=page_size,
            mmap_size=mmap_size,
            cache_kb=cache_kb,
            read_only=bool(read_only),
            synchronous=synchronous,
            checkpoints=checkpoints,
            # Kept hidden from repr(); None for a plain file.
            key=None if key is None else HiddenKey(key),
        )
        self._core = VaultCore(
            path,
            retries,
            float(backoff_base),
            bool(enable_wal),
            page_size,
            mmap_size,
            cache_kb,
            bool(read_only),
            synchronous,
            checkpoints,
            key,
        )
        # By id: tables are mappings and sequences, which are not hashable.
        self._tables: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        _LIVE.add(self)

    # -- state ---------------------------------------------------------------------------------
    @property
    def native(self) -> VaultCore:
        """The native handle, with the injected clock (if any) read now and pushed into it.
        Raises :class:`ClosedError` once the file is closed."""
        core = self._core
        if core is None:
            raise ClosedError("vault is closed")
        if self.clock is not None:
            core.set_clock(int(self.clock() * 1000))
        return core

    @property
    def closed(self) -> bool:
        """Whether the file was closed (through any table on it)."""
        return self._core is None or self._core.closed

    @property
    def read_only(self) -> bool:
        """Whether writes are refused."""
        return self.native.read_only

    def now_ms(self) -> int:
        """The current time in ms, as the file's clock reads it."""
        return int((self.clock() if self.clock is not None else time.time()) * 1000)

    # -- tables --------------------------------------------------------------------------------
    def attach(self, table: Table) -> None:
        """Register a table, so file-level operations cover its caches."""
        self._tables[id(table)] = table

    def caches(self) -> List[BatchingCache]:
        """Every write-back cache of every table on this file."""
        caches: List[BatchingCache] = []
        for table in list(self._tables.values()):
            caches.extend(table._caches())
        return caches

    def flush(self) -> None:
        """Write every table's cached writes."""
        for cache in self.caches():
            cache.flush()

    # -- transactions and maintenance ------------------------------------------------------------
    def transaction(self) -> Transaction:
        """An explicit transaction over every table on this file (see
        :meth:`ambervault.KVault.transaction`)."""
        return Transaction(self.native, self.caches())

    def check(self) -> List[str]:
        """SQLite's integrity check plus every table kind's invariants; empty when healthy."""
        self.flush()
        return self.native.check()

    def backup(self, dest: Union[str, os.PathLike[str]]) -> None:
        """Write a consistent copy of the whole file to ``dest`` (which must not exist)."""
        self.flush()
        self.native.backup(os.fspath(dest))

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the main file and truncate it."""
        self.flush()
        self.native.checkpoint()

    def optimize(self) -> None:
        """Reclaim abandoned uploads and free space (``VACUUM``)."""
        self.flush()
        self.native.optimize()

    def rekey(self, key: KeyArg) -> None:
        """Re-encrypt the file with ``key``; the open arguments of every table on it (which
        pickling and reopening use) take the new key."""
        value = key_value(key)
        self.flush()
        self.native.rekey(value)
        hidden = HiddenKey(value)  # type: ignore[arg-type]
        self.open_args["key"] = hidden
        for table in list(self._tables.values()):
            args = getattr(table, "_open_args", None)
            if isinstance(args, dict) and "key" in args:
                args["key"] = hidden

    def size_on_disk(self) -> tuple[int, int]:
        """``(file_bytes, wal_bytes)``; zeros for an in-memory file."""
        file_bytes = wal_bytes = 0
        if self.path != ":memory:":
            with contextlib.suppress(OSError):
                file_bytes = os.path.getsize(self.path)
            with contextlib.suppress(OSError):
                wal_bytes = os.path.getsize(self.path + "-wal")
        return file_bytes, wal_bytes

    def close(self) -> None:
        """Flush and stop every table's caches, then close the file. Idempotent."""
        core = self._core
        if core is None:
            return
        if not core.closed:
            for table in list(self._tables.values()):
                table._stop_caches()
        core.close()
        _LIVE.discard(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ambervault.VaultFile {self.path!r} {state}>"


_T = TypeVar("_T")


def on_file(
    path_or_vault: Any, call: Callable[[VaultCore], _T], *, read_only: bool, key: KeyArg = None
) -> _T:
    """``call`` on the open file of a vault (anything with a ``_file``), or on the file at a
    path, opened for the call alone (read-only when ``read_only``, with ``key`` if encrypted)
    and closed after it."""
    file = getattr(path_or_vault, "_file", None)
    if isinstance(file, VaultFile):
        return call(file.native)
    opened = VaultFile(fspath(path_or_vault), read_only=read_only, key=key)
    try:
        return call(opened.native)
    finally:
        opened.close()
