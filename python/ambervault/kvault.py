"""KVault: a dict of keys to byte values of any size, in one SQLite file."""

from __future__ import annotations

import collections.abc
import contextlib
import os
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from ._ambervault import BranchesCore, KVaultCore, columns_summary, compression_setting
from ._args import check_int, check_ttl, raw_key_bytes
from ._codec import NAMES, RAW, ValueCodec
from ._file import DEFAULT_MMAP_BYTES, KeyArg, VaultFile
from ._kv_backend import CachedBackend, ClosedBackend, DirectBackend
from .branches import BranchesMixin
from .bundles import BundlesMixin
from .cache import BatchingCache, CacheControls, WriteBackCache
from .cache_policy import CachePolicyMixin, check_policy_args, check_seconds
from .exceptions import ClosedError, DatabaseBusy, InvalidArgument, NotFound
from .history import HistoryMixin, check_history
from .json_docs import JsonDocsMixin
from .state_cells import StateCellsMixin
from .streams import VaultReader, VaultWriter, file_descriptor, grow_pipe, source_descriptor
from .transaction import Transaction
from .views import ItemsView, KeysView, Range, ValuesView

Key = Union[str, bytes, Tuple[Any, ...]]
BytesLike = Union[bytes, bytearray, memoryview]

_MISSING: Any = object()
_PAGE = 1000  # keys per round trip when scanning
_ITEMS_PAGE_BYTES = 16 << 20  # value bytes per round trip when scanning items
_UPDATE_BATCH = 1024


class KVault(  # type: ignore[type-arg]
    collections.abc.MutableMapping,
    CacheControls,
    CachePolicyMixin,
    HistoryMixin,
    StateCellsMixin,
    JsonDocsMixin,
    BundlesMixin,
    BranchesMixin,
):
    """A persistent mapping of ``str``, ``bytes`` or tuple keys to values in a SQLite file.

    Values are bytes (stored as they are) or Python values (``str``, numbers, ``None``, lists,
    tuples, dicts, dates, numpy arrays, ...), which come back as the same type and value; the
    encoding is kept beside each value (see ``docs/kvault.md`` for the round-trip table).
    Small values are stored inline; values larger than ``chunk_size`` are stored as chunks and
    can be streamed in and out in constant memory (:meth:`put_file`, :meth:`get_to_file`,
    :meth:`open`). A ``str`` key is its UTF-8 bytes, so ``vault["k"]`` and ``vault[b"k"]`` are the
    same entry; iteration returns each key as the type it was last written with. Tuple keys
    (of ``str``, ``bytes``, ``int`` and nested tuples) sort in Python's tuple order, so
    ``items(prefix=("org",))`` scans one partition.

    :param path: file path (``str`` or ``os.PathLike``), or ``":memory:"``.
    :param chunk_size: chunk size for large values, in bytes (also the largest inline value).
    :param retries: retries when another process holds the write lock.
    :param backoff_base: first retry delay in seconds; doubles each retry.
    :param table: table name (letters, digits, underscores); several tables may share a file.
    :param enable_wal: use write-ahead logging (readers never block the writer).
    :param page_size: SQLite page size for a new file.
    :param mmap_size: bytes of the file SQLite may memory-map.
    :param cache_kb: SQLite page cache size in KiB.
    :param read_only: open without write access (the file must exist).
    :param synchronous: ``"normal"`` (default: survives a process crash) or ``"full"``
        (survives power loss too); ``"off"`` and ``"extra"`` are also accepted.
    :param default_ttl: seconds every write lives unless it gives its own ``ttl``; stored in
        the file (see :meth:`set_limits`), so later opens use it too.
    :param clock: a callable returning epoch seconds, used instead of the system clock.
    :param auto_pack: store Python values (default); with ``False`` only bytes-like values are
        accepted (see :meth:`enable_auto_pack`).
    :param allow_pickle: allow values wrapped in :class:`~ambervault.Pickle` to be stored and
        pickled values to be read. Reading a pickle runs code chosen by whoever wrote the file:
        only turn this on for files you trust.
    :param reader_cache_kb, reader_idle_limit: accepted for code written for kohakuvault 1.1.0
        (which sizes a reader-connection pool with them); ambervault's reads share the vault's
        connection, so they have no effect.
    :param checkpoints: ``"auto"`` (default: ambervault copies the WAL back into the file) or
        ``"external"``: another program that follows the WAL, such as Litestream, does it, and
        writes wait longer for its locks (see ``docs/replication.md``).
    :param max_bytes, eviction, dedup: the cache policy, stored in the file (see
        :meth:`set_limits` and ``docs/cache.md``); not given: as the file has it.
    :param auto_prune: delete expired keys every this many seconds on the vault's maintenance
        thread, while this vault is open.
    :param history: earlier versions kept per key: ``0`` (none, the default), a count, or
        ``"all"``; stored in the file (see :meth:`history` and ``docs/history.md``).
    :param branch: open this branch of the table (see :meth:`create_branch`) instead of
        ``"main"``; the cache policy and history arguments still apply to the table.
    :param compression: compress values larger than the inline limit, chunk by chunk:
        ``"zstd"``, ``"zstd:<level>"``, ``"lz4"`` or ``"none"`` (see :meth:`set_compression` and
        ``docs/compression.md``; ``"pco"`` is for numeric columns only); stored in the file; not
        given: as the file has it.
    :param key: open (or create) an encrypted file: a ``str`` passphrase, or 32 ``bytes`` used
        as a raw 256-bit key. Every page of the file and of its write-ahead log is encrypted
        (SQLCipher). A wrong key raises :class:`~ambervault.WrongKeyError`; a build without
        encryption raises :class:`~ambervault.EncryptionUnavailableError` (see
        :func:`~ambervault.encryption_available` and ``docs/encryption.md``). The key is kept
        out of ``repr()``, and a pickled vault reopens with it.

    >>> vault = KVault(":memory:")
    >>> vault["a"] = b"1"
    >>> vault.put(b"b", {"n": 2, "tags": ("x", "y")})
    >>> list(vault.items())
    [('a', b'1'), (b'b', {'n': 2, 'tags': ('x', 'y')})]
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        chunk_size: int = 1 << 20,
        retries: int = 4,
        backoff_base: float = 0.02,
        table: str = "kvault",
        enable_wal: bool = True,
        page_size: int = 4096,
        mmap_size: int = DEFAULT_MMAP_BYTES,
        cache_kb: int = 20000,
        read_only: bool = False,
        synchronous: str = "normal",
        default_ttl: Optional[float] = None,
        clock: Optional[Callable[[], float]] = None,
        auto_pack: bool = True,
        allow_pickle: bool = False,
        reader_cache_kb: Optional[int] = None,
        reader_idle_limit: Optional[int] = None,
        checkpoints: str = "auto",
        max_bytes: Optional[int] = None,
        eviction: Optional[str] = None,
        dedup: Optional[str] = None,
        auto_prune: Optional[float] = None,
        history: Optional[Any] = None,
        branch: Optional[str] = None,
        compression: Optional[str] = None,
        key: KeyArg = None,
    ) -> None:
        self._core: Optional[KVaultCore] = None
        self._default_ttl_ms: Optional[int] = None
        # Whether this handle came from `branch()` (closing it leaves the file open).
        self._branch_handle = False
        # kohakuvault 1.1.0 sizes a pool of reader connections with these; ambervault's reads
        # share the vault's connection (with read leases), so there is no pool to size. Checked
        # and accepted so code written for it runs unchanged.
        # Checked as kohakuvault checks them: the cache size positive, the idle limit >= 0.
        if reader_cache_kb is not None and check_int("reader_cache_kb", reader_cache_kb) <= 0:
            raise InvalidArgument(f"reader_cache_kb must be positive, not {reader_cache_kb}")
        if reader_idle_limit is not None and check_int("reader_idle_limit", reader_idle_limit) < 0:
            raise InvalidArgument(f"reader_idle_limit must be >= 0, not {reader_idle_limit}")
        self._codec = ValueCodec(auto_pack, allow_pickle)
        # kohakuvault's default; only recorded (see enable_headers).
        self._headers = True
        check_policy_args(max_bytes, eviction, dedup, default_ttl, auto_prune)
        if history is not None:
            check_history(history)
        if not isinstance(table, str):
            raise TypeError(f"table must be a str, not {type(table).__name__}")
        if branch is not None and not isinstance(branch, str):
            raise TypeError(f"branch must be a str, not {type(branch).__name__}")
        check_int("chunk_size", chunk_size)
        if compression is not None and not isinstance(compression, str):
            raise TypeError(f"compression must be a str or None, not {type(compression).__name__}")
        # Refused before the file is opened, so a bad argument creates nothing.
        KVaultCore.validate(table, chunk_size)
        wanted_compression = None if compression is None else compression_setting(compression, True)
        self._file = VaultFile(
            path,
            retries=retries,
            backoff_base=backoff_base,
            enable_wal=enable_wal,
            page_size=page_size,
            mmap_size=mmap_size,
            cache_kb=cache_kb,
            read_only=read_only,
            synchronous=synchronous,
            clock=clock,
            checkpoints=checkpoints,
            key=key,
        )
        self._clock = clock
        try:
            self._core = KVaultCore(self._file.native, table, chunk_size)
        except BaseException:
            self._file.close()
            raise
        self._open_args: Dict[str, Any] = dict(
            path=self._file.path,
            chunk_size=chunk_size,
            table=table,
            default_ttl=default_ttl,
            max_bytes=max_bytes,
            eviction=eviction,
            dedup=dedup,
            auto_prune=auto_prune,
            history=history,
            branch=branch,
            compression=compression,
            auto_pack=bool(auto_pack),
            allow_pickle=bool(allow_pickle),
            **self._file.open_args,
        )
        # How operations reach the table: directly, or through the write-back cache.
        self._backend: DirectBackend = DirectBackend(self._core, self._codec.decode)
        self.path = self._file.path
        self.table = table
        try:
            self._open_policy(max_bytes, eviction, dedup, default_ttl, auto_prune, history)
            # Recorded in the file like the policy; a read-only vault writes nothing anyway.
            if compression is not None and not read_only and self._core.compression != wanted_compression:
                self._core.set_compression(compression)
            if branch is not None and branch != "main":
                # The policy is the table's (set above through main); this handle reads and
                # writes the branch, and owns the file as any KVault does.
                self._core = BranchesCore(self._core).open(branch)
                self._backend = DirectBackend(self._core, self._codec.decode)
        except BaseException:
            self._core = None
            self._file.close()
            raise
        self._file.attach(self)

    # -- basics ------------------------------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        """Chunk size for large values, in bytes."""
        return self._open_args["chunk_size"]

    @property
    def _cache(self) -> Optional[WriteBackCache]:  # type: ignore[override]
        """The write-back cache (see :class:`CacheControls`); setting it swaps the backend."""
        return self._backend.cache

    @_cache.setter
    def _cache(self, cache: Optional[WriteBackCache]) -> None:
        core = self._core
        if core is None:
            raise ClosedError("vault is closed")
        decode = self._codec.decode
        self._backend = (
            DirectBackend(core, decode) if cache is None else CachedBackend(core, decode, cache, self._now_ms)
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the file was closed through another table)."""
        return self._core is None or self._file.closed

    @property
    def read_only(self) -> bool:
        """Whether writes are refused."""
        return self._file.read_only

    @property
    def _native(self) -> KVaultCore:
        core = self._core
        if core is None:
            raise ClosedError("vault is closed")
        if self._clock is not None:
            self._file.native  # noqa: B018 - pushes the injected clock's time into the file
        return core

    def _now_ms(self) -> int:
        return self._file.now_ms()

    @property
    def compression(self) -> Optional[str]:
        """How the table compresses new values larger than the inline limit (about 900 bytes),
        spelled out (``"zstd:3:0.05"``: codec, level, minimum saving), or None. Recorded in the
        file: later openings use it unless they pass ``compression=``."""
        return self._native.compression

    def set_compression(self, compression: Optional[str]) -> None:
        """Compress new values as ``compression`` says: ``"zstd"``, ``"zstd:<level>"`` (-7 to
        22), ``"lz4"``, each optionally followed by ``":<min_saving>"`` (a chunk is stored
        compressed only if it shrinks by that fraction; default 0.05), or None. Values already
        stored keep their form and stay readable (each chunk records its codec)."""
        if compression is not None and not isinstance(compression, str):
            raise TypeError(f"compression must be a str or None, not {type(compression).__name__}")
        self._native.set_compression("none" if compression is None else compression)
        self._open_args["compression"] = compression

    def _open_policy(
        self,
        max_bytes: Optional[int],
        eviction: Optional[str],
        dedup: Optional[str],
        default_ttl: Optional[float],
        auto_prune: Optional[float],
        history: Optional[Any] = None,
    ) -> None:
        """Stores the cache arguments given at open (a read-only vault keeps a default TTL in
        memory only) and starts auto-pruning."""
        given: Dict[str, Any] = {
            name: value
            for name, value in (
                ("max_bytes", max_bytes),
                ("eviction", eviction),
                ("dedup", dedup),
                ("default_ttl", default_ttl),
                ("history", history),
            )
            if value is not None
        }
        if self._file.read_only:
            self._adopt_policy()
            if default_ttl is not None:
                self._default_ttl_ms = int(default_ttl * 1000)
        elif given and {k: v for k, v in self.limits().items() if k in given} != given:
            self.set_limits(**given)
        else:
            self._adopt_policy()
        if auto_prune is not None:
            self._native.set_auto_prune(max(1, int(auto_prune * 1000)))

    def _sync_writes(self) -> None:
        self._backend.sync()

    def _expiry(self, ttl: Optional[float]) -> Optional[int]:
        """Absolute expiry (ms) for a write with ``ttl`` seconds (``None``: the default TTL;
        ``0``: never)."""
        if ttl is None:
            if self._default_ttl_ms is None:
                return None
            return self._now_ms() + self._default_ttl_ms
        if check_seconds("ttl", ttl, allow_zero=True) == 0:
            return None
        return self._now_ms() + int(ttl * 1000)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ambervault.KVault {self.path!r} table={self.table!r} {state}>"

    def __enter__(self) -> KVault:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self) -> Tuple[Any, ...]:
        if self.path == ":memory:":
            raise TypeError("an in-memory KVault cannot be pickled (it has no file to reopen)")
        return (_reopen, (self._open_args,))

    # -- single keys -------------------------------------------------------------------------
    def put(
        self,
        key: Key,
        value: Any,
        ttl: Optional[float] = None,
        if_version: Optional[int] = None,
        if_absent: bool = False,
    ) -> None:
        """Store ``value`` under ``key``, replacing any previous value atomically. Bytes-like
        values are stored as they are; other values are encoded (``TypeError`` for a value
        that cannot be stored, and nothing is written).

        :param ttl: seconds until the key expires (default: the vault's ``default_ttl``; ``0``:
            never).
        :param if_version: write only if the key's current :meth:`version` is this one.
        :param if_absent: write only if the key does not exist.
        :raises Conflict: when a condition does not hold (nothing is written).

        >>> v = KVault(":memory:"); v.put("k", b"v"); v.get("k")
        b'v'
        >>> v.put("k", b"w", if_version=v.version("k")); v.version("k")
        2
        """
        if self._clock is not None:
            self._file.native  # noqa: B018 - pushes the injected clock's time into the file
        if type(value) is bytes:
            data, encoding = value, RAW
        else:
            data, encoding = self._codec.encode(value)
        self._backend.put(key, data, self._expiry(ttl), if_version, bool(if_absent), encoding)

    def get(self, key: Key, default: Any = None, decode: bool = False, version: Optional[int] = None) -> Any:
        """The value of ``key``, or ``default`` when it is absent. With ``decode=True`` a raw
        (bytes) value is returned as ``str``, decoded as UTF-8. With ``version``, the value the
        key had at that version, current or kept by ``history`` (see :meth:`get_version`).

        >>> v = KVault(":memory:"); v["text"] = "é".encode()
        >>> v.get("missing", b"fallback"), v.get("text", decode=True)
        (b'fallback', 'é')
        """
        if self._clock is not None:
            self._file.native  # noqa: B018 - pushes the injected clock's time into the file
        if version is None:
            value = self._backend.get(key, default)
        else:
            value = self.get_version(key, version, default)
        if decode and type(value) is bytes:
            return value.decode("utf-8")
        return value

    def delete(self, key: Key) -> bool:
        """Remove ``key``; returns whether it existed.

        >>> v = KVault(":memory:"); v["k"] = b"v"; v.delete("k"), v.delete("k")
        (True, False)
        """
        self._native  # noqa: B018 - raises ClosedError when closed
        return self._backend.delete(key)

    def exists(self, key: Key) -> bool:
        """Whether ``key`` is present.

        >>> v = KVault(":memory:"); v[b"k"] = b""; v.exists("k")
        True
        """
        self._native  # noqa: B018 - raises ClosedError, or syncs the injected clock
        return self._backend.exists(key)

    def __getitem__(self, key: Key) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise NotFound(key)
        return value

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that overrides `put` sees every `v[k] = x` there, as before the fast path.
        if cls.put is not KVault.put and "__setitem__" not in cls.__dict__:
            cls.__setitem__ = KVault._setitem_via_put  # type: ignore[method-assign]

    def _setitem_via_put(self, key: Key, value: Any) -> None:
        self.put(key, value)

    def __setitem__(self, key: Key, value: Any) -> None:
        cached_put = self._backend.cached_put
        if (
            cached_put is not None
            and type(value) is bytes
            and self._default_ttl_ms is None
            and self._clock is None
        ):
            # The bulk path (`enable_cache()` then `vault[k] = v`): straight to the native cache,
            # which checks the key, holds the write and flushes at the threshold.
            if not cached_put(key, value):
                self._backend.core.put(key, value)
            return
        self.put(key, value)

    def __delitem__(self, key: Key) -> None:
        if not self.delete(key):
            raise NotFound(key)

    def __contains__(self, key: object) -> bool:
        return self.exists(key)  # type: ignore[arg-type]

    def _atomic(self) -> Any:
        """A transaction for a read-then-write (``pop``, ``setdefault``), so that of several
        handles racing on one key exactly one acts; a no-op context where a transaction cannot
        be opened (read-only: the write is refused anyway) or must not flush the cache (inside
        ``lock_cache()``)."""
        cache = self._cache
        if self.read_only or (cache is not None and cache.locked):
            return contextlib.nullcontext()
        return self.transaction()

    def pop(self, key: Key, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (``default`` if absent, else :class:`NotFound`),
        in one transaction: of several handles popping the same key, one gets the value.

        >>> v = KVault(":memory:"); v["k"] = [1]; v.pop("k"), v.pop("k", None), "k" in v
        ([1], None, False)
        """
        with self._atomic():
            value = self._backend.get(key, _MISSING)
            if value is _MISSING:
                if default is _MISSING:
                    raise NotFound(key)
                return default
            self._backend.delete(key)
            return value

    def setdefault(self, key: Key, default: Any = None) -> Any:
        """The value of ``key``; if absent, store ``default`` and return it, in one transaction
        (of several handles, one stores its default and all return that value). Inside
        :meth:`lock_cache` a missing key is refused with :class:`DatabaseBusy` (the insert would
        be written around the locked cache).

        >>> v = KVault(":memory:"); v.setdefault("k", {"a": 1}), v.setdefault("k", 2)
        ({'a': 1}, {'a': 1})
        """
        cache = self._cache
        with self._atomic():
            value = self._backend.get(key, _MISSING)
            if value is not _MISSING:
                return value
            if cache is not None and cache.locked:
                raise DatabaseBusy("setdefault cannot insert while the cache is locked (inside lock_cache())")
            self.put(key, default)
            return default

    def info(self, key: Key) -> Optional[Dict[str, Any]]:
        """Metadata of ``key`` (stored size in bytes, version, created/updated time in ms,
        chunked, expiry, encoding), or None.

        >>> v = KVault(":memory:"); v["k"] = b"abc"; v["k"] = b"abcd"; v["n"] = 7
        >>> meta = v.info("k"); meta["size"], meta["version"], meta["encoding"]
        (4, 2, 'raw')
        >>> v.info("n")["encoding"]
        'msgpack'
        """
        self._backend.sync_key(key)
        found = self._native.info(key)
        if found is None:
            return None
        size, version, created, updated, chunked, expires, encoding = found
        return {
            "size": size,
            "version": version,
            "created_at_ms": created,
            "updated_at_ms": updated,
            "chunked": chunked,
            "expires_at_ms": expires,
            "encoding": NAMES.get(encoding, f"unknown ({encoding})"),
        }

    # -- value encoding switches (kohakuvault's names) ------------------------------------------
    def enable_auto_pack(self, use_pickle: bool = False) -> None:
        """Store Python values (the default). ``use_pickle`` is accepted for code written for
        kohakuvault; pickle is still only used when the vault was opened with
        ``allow_pickle=True`` and the value is wrapped in :class:`~ambervault.Pickle`."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._codec.auto_pack = True

    def disable_auto_pack(self) -> None:
        """Accept only bytes-like values from now on (typed values already stored still read
        back as their types).

        >>> v = KVault(":memory:"); v.disable_auto_pack(); v.auto_pack_enabled()
        False
        """
        self._native  # noqa: B018 - raises ClosedError when closed
        self._codec.auto_pack = False

    def auto_pack_enabled(self) -> bool:
        """Whether Python values are stored (see :meth:`enable_auto_pack`)."""
        self._native  # noqa: B018 - raises ClosedError when closed
        return self._codec.auto_pack

    def enable_headers(self) -> None:
        """For code written for kohakuvault, which keeps a value's encoding in a header inside
        the value. ambervault always keeps it beside the value, so values stay exactly the
        bytes given; this only records the setting (:meth:`headers_enabled`)."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._headers = True

    def disable_headers(self) -> None:
        """See :meth:`enable_headers`."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._headers = False

    def headers_enabled(self) -> bool:
        """The setting recorded by :meth:`enable_headers` / :meth:`disable_headers`."""
        self._native  # noqa: B018 - raises ClosedError when closed
        return self._headers

    # -- versions and expiry -------------------------------------------------------------------
    def version(self, key: Key) -> Optional[int]:
        """The key's version: 1 after its first write, +1 for every write since; None when
        absent. Use it with ``put(..., if_version=...)`` for compare-and-swap.

        >>> v = KVault(":memory:"); v["k"] = b"1"; v["k"] = b"2"; v.version("k"), v.version("x")
        (2, None)
        """
        self._backend.sync_key(key)
        return self._native.version(key)

    def expires_at(self, key: Key) -> Optional[float]:
        """When ``key`` expires, in epoch seconds, or None if it never does. Raises
        :class:`NotFound` for a missing (or expired) key."""
        meta = self.info(key)
        if meta is None:
            raise NotFound(key)
        expires = meta["expires_at_ms"]
        return None if expires is None else expires / 1000

    def touch(self, key: Key, ttl: Optional[float] = None) -> bool:
        """Set the key to expire ``ttl`` seconds from now (``None``: never). Returns whether the
        key exists."""
        self._backend.sync_key(key)
        expires = None if ttl is None else self._now_ms() + int(check_ttl(ttl) * 1000)
        return self._native.touch(key, expires)

    # -- transactions ----------------------------------------------------------------------------
    def transaction(self) -> Transaction:
        """Start a transaction: every write through this vault (values, streams, batches,
        deletes) and through ``ColumnVault(vault)`` columns is atomic until
        :meth:`Transaction.commit`. Use it as ``with vault.transaction(): ...`` (commits at the
        end, rolls back on an exception) or keep the object and call ``commit()`` /
        ``rollback()``. Nested transactions are savepoints.

        >>> v = KVault(":memory:")
        >>> with v.transaction():
        ...     v["a"] = b"1"; v["b"] = b"2"
        >>> t = v.transaction(); v["c"] = b"3"; t.rollback(); sorted(v)
        ['a', 'b']
        """
        return self._file.transaction()

    def _caches(self) -> List[BatchingCache]:
        return [] if self._cache is None else [self._cache]

    def _stop_caches(self) -> None:
        if self._cache is not None:
            self.disable_cache()

    # -- batches -----------------------------------------------------------------------------
    def put_many(
        self,
        items: Union[Mapping[Key, Any], List[Tuple[Key, Any]], Tuple[Tuple[Key, Any], ...]],
        ttl: Optional[float] = None,
    ) -> None:
        """Store many pairs in one transaction: afterwards all are stored, or (on error) none.

        ``items`` is a list or tuple of ``(key, value)`` pairs (later pairs win over earlier ones
        of the same key) or a mapping; any other iterable is refused without being read, since
        the whole batch is held in memory (:meth:`update` takes any iterable, in batches). With a
        write-back cache the batch is written directly and replaces cached writes of its keys;
        inside :meth:`lock_cache` it is refused with :class:`DatabaseBusy`.

        >>> v = KVault(":memory:"); v.put_many({"a": b"1", "b": b"2"}); len(v)
        2
        """
        if isinstance(items, Mapping):
            pairs = list(items.items())
        elif isinstance(items, (list, tuple)):
            pairs = list(items)
        else:
            raise TypeError(
                f"put_many takes a list or tuple of (key, value) pairs or a mapping, not "
                f"{type(items).__name__} (update() takes any iterable)"
            )
        self._native  # noqa: B018 - raises ClosedError, or syncs the injected clock
        # The native side encodes every value (bytes as they are) before anything is written,
        # so a value that cannot be stored refuses the whole batch.
        self._backend.put_many(pairs, self._expiry(ttl), self._codec.encode)

    def get_many(self, keys: Union[List[Key], Tuple[Key, ...]], default: Any = None) -> List[Any]:
        """Values of ``keys`` in order (``default`` where absent; a stored ``None`` stays
        ``None``), read in one round trip. ``keys`` is a list or tuple; duplicates are kept.

        >>> v = KVault(":memory:"); v["a"] = b"1"; v.get_many(["a", "zz"])
        [b'1', None]
        """
        if not isinstance(keys, (list, tuple)):
            raise TypeError(f"get_many takes a list or tuple of keys, not {type(keys).__name__}")
        self._native  # noqa: B018 - raises ClosedError, or syncs the injected clock
        return self._backend.get_many(list(keys), default)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        """Like ``dict.update``, written as :meth:`put_many` batches of up to 1024 pairs, each
        one transaction (a later batch's error leaves earlier batches stored). Pairs are read
        from ``other`` one batch at a time, so any iterable works in bounded memory. Like
        :meth:`put_many`, batches go around a write-back cache and are refused in
        :meth:`lock_cache`."""
        if isinstance(other, Mapping):
            source: Iterable[Tuple[Any, Any]] = other.items()
        elif hasattr(other, "keys"):
            source = ((k, other[k]) for k in other.keys())
        else:
            source = other
        batch: List[Tuple[Any, Any]] = []
        for pair in source:
            key, value = pair
            batch.append((key, value))
            if len(batch) >= _UPDATE_BATCH:
                self.put_many(batch)
                batch = []
        batch.extend(kwargs.items())
        if batch:
            self.put_many(batch)

    def clear(self) -> None:
        """Remove every key of this table."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._backend.clear()

    # -- iteration ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count(None, None, None)

    def _count(self, prefix: Optional[Key], start: Optional[Key], end: Optional[Key]) -> int:
        self._backend.sync()
        return self._native.count(prefix, start, end)

    def __iter__(self) -> Iterator[Key]:
        return self._iter_keys(Range())

    def _iter_keys(self, rng: Range) -> Iterator[Key]:
        self._backend.sync()
        after: Optional[bytes] = None
        remaining = rng.limit
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            keys, after = self._native.scan_keys(rng.prefix, rng.start, rng.end, after, page, rng.reverse)
            if not keys:
                return
            yield from keys
            if remaining is not None:
                remaining -= len(keys)

    def _iter_items(self, rng: Range) -> Iterator[Tuple[Key, Any]]:
        self._backend.sync()
        after: Optional[bytes] = None
        remaining = rng.limit
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            items, after = self._native.scan_items(
                rng.prefix, rng.start, rng.end, after, page, _ITEMS_PAGE_BYTES, rng.reverse
            )
            if after is None:
                return
            value = self._backend.value
            for key, stored in items:
                yield key, value(stored)
            if remaining is not None:
                remaining -= len(items)

    def keys(  # type: ignore[override]
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
    ) -> KeysView:
        """Keys in bytewise order (descending with ``reverse``), optionally only those starting
        with ``prefix`` and in ``[start, end)``, at most ``limit`` of them. Streams in pages:
        memory stays constant however many keys there are.

        >>> v = KVault(":memory:"); v.update({"img:1": b"", "img:2": b"", "txt:1": b""})
        >>> list(v.keys(prefix="img:")), list(v.keys(start="img:2", reverse=True))
        (['img:1', 'img:2'], ['txt:1', 'img:2'])
        """
        return KeysView(self, Range(prefix, start, end, limit, reverse))

    def values(  # type: ignore[override]
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
    ) -> ValuesView:
        """Values in key order, with the same filters as :meth:`keys`."""
        return ValuesView(self, Range(prefix, start, end, limit, reverse))

    def items(  # type: ignore[override]
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
    ) -> ItemsView:
        """``(key, value)`` pairs in key order, with the same filters as :meth:`keys`."""
        return ItemsView(self, Range(prefix, start, end, limit, reverse))

    def to_arrow(
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
        decode: bool = False,
        max_value_bytes: Optional[int] = 64 << 20,
    ) -> Any:
        """The pairs a scan with these filters (as :meth:`items`) finds, as a ``pyarrow.Table``
        of ``key`` (``string`` for str keys, ``binary`` for bytes keys, a ``list`` for tuple
        keys whose elements share one type; keys of mixed types are an :class:`InvalidArgument`),
        ``value`` (the stored bytes, ``binary``) and ``encoding`` (``"raw"`` for bytes values,
        else the typed value's encoding, e.g. ``"msgpack"``). With ``decode=True``, ``value``
        holds the decoded values typed by pyarrow and there is no ``encoding`` column.

        The table is built in memory: a value larger than ``max_value_bytes`` (checked before it
        is read; None for no limit) is an :class:`InvalidArgument` pointing to the CLI's
        ``export``, which writes values out as files. Needs pyarrow.

        >>> v = KVault(":memory:"); v["a"] = b"xy"; v["b"] = 7
        >>> t = v.to_arrow(); t.column("key").to_pylist(), t.column("encoding").to_pylist()
        (['a', 'b'], ['raw', 'msgpack'])
        >>> v.to_arrow(prefix="b", decode=True).column("value").to_pylist()
        [7]
        """
        from . import _arrow

        return _arrow.kv_table(self, prefix, start, end, limit, reverse, decode, max_value_bytes)

    # -- streaming ---------------------------------------------------------------------------
    def put_file(
        self,
        key: Key,
        reader: Any,
        size: Optional[int] = None,
        chunk_size: Optional[int] = None,
        ttl: Optional[float] = None,
    ) -> int:
        """Stream a value from a binary file-like ``reader`` (anything with ``read(n)``, or an
        iterable of bytes chunks) without holding it in memory. With ``size``, exactly that many
        bytes are read (a shorter stream is an error and stores nothing); without it, the
        stream is read to its end. The value becomes visible only when complete. Returns the
        number of bytes stored. A ``reader`` that is a pipe (from a child process or a shell)
        is grown to hold 1 MiB on Linux, so its writer can run a chunk ahead.

        >>> import io
        >>> v = KVault(":memory:"); v.put_file("f", io.BytesIO(b"x" * 10))
        10
        """
        raw_key_bytes(key)  # a bad key is refused before anything is read
        if size is not None:
            check_int("size", size)
            if size < 0:
                raise InvalidArgument(f"size must be >= 0, not {size}")
        step = self.chunk_size if chunk_size is None else check_int("chunk_size", chunk_size)
        writer = self._native.open_writer(chunk_size)
        try:
            remaining = size
            if hasattr(reader, "read"):
                grow_pipe(source_descriptor(reader), step)
                while remaining is None or remaining > 0:
                    data = reader.read(step if remaining is None else min(step, remaining))
                    if not data:
                        break
                    writer.write(data)
                    if remaining is not None:
                        remaining -= len(data)
            elif isinstance(reader, collections.abc.Iterable) and not isinstance(
                reader, (bytes, bytearray, memoryview, str)
            ):
                for data in reader:
                    if remaining is not None and len(data) > remaining:
                        data = memoryview(data)[:remaining]
                    writer.write(data)
                    if remaining is not None:
                        remaining -= len(data)
                        if remaining == 0:
                            break
            else:
                raise TypeError(
                    "reader must have a read(n) method or be an iterable of bytes chunks, "
                    f"not {type(reader).__name__}"
                )
            if remaining is not None and remaining > 0:
                raise InvalidArgument(
                    f"reader ended after {size - remaining} of the {size} bytes promised by size="
                )
            return self._finish_writer(writer, key, ttl)
        except BaseException:
            writer.abort()
            raise

    def _finish_writer(self, writer: Any, key: Key, ttl: Optional[float] = None) -> int:
        return self._backend.finish_writer(writer, key, self._expiry(ttl))

    def get_to_file(self, key: Key, writer: BinaryIO, chunk_size: Optional[int] = None) -> int:
        """Stream the value of ``key`` into ``writer`` (anything with ``write(bytes)``) one
        chunk at a time. Returns the number of bytes written. Raises :class:`NotFound` for a
        missing key. A ``writer`` that is a pipe is grown to hold 1 MiB on Linux, as in
        :meth:`put_file`.

        >>> import io
        >>> v = KVault(":memory:"); v["f"] = b"abc"; out = io.BytesIO()
        >>> v.get_to_file("f", out), out.getvalue()
        (3, b'abc')
        """
        step = self.chunk_size if chunk_size is None else check_int("chunk_size", chunk_size)
        if step <= 0:
            raise InvalidArgument(f"chunk_size must be positive, not {step}")
        with self.open(key) as source:
            fd = file_descriptor(writer)
            if fd is not None:
                grow_pipe(fd, step)
                # A file: written natively, straight from the vault's pages to the descriptor,
                # with no bytes object per chunk. What the file object buffers goes first; its
                # position is read from the descriptor again by tell() and by later writes.
                writer.flush()
                total: int = source._core.copy_to_fd(fd, step)
                return total
            total = 0
            while True:
                data = source.read(step)
                if not data:
                    return total
                writer.write(data)
                total += len(data)

    def open(self, key: Key, mode: str = "rb", chunk_size: Optional[int] = None) -> Any:
        """Open a value as a binary file.

        ``"rb"`` returns a seekable :class:`VaultReader` (range reads touch only the chunks they
        need). ``"wb"`` returns a :class:`VaultWriter` whose bytes become the value when it is
        closed without error; an exception inside ``with`` discards them.
        """
        if mode == "rb":
            self._backend.sync_key(key)
            core = self._native.open_reader(key)
            if core is None:
                raise NotFound(key)
            return VaultReader(core, key)
        if mode == "wb":
            raw_key_bytes(key)  # a bad key is refused now, not when the writer closes
            return VaultWriter(self._native.open_writer(chunk_size), key, self._finish_writer_for)
        raise InvalidArgument(f"mode must be 'rb' or 'wb', not {mode!r}")

    def _finish_writer_for(self, writer: Any, key: Key) -> int:
        return self._finish_writer(writer, key)

    # -- cache -------------------------------------------------------------------------------
    def _new_cache(
        self, cap_bytes: int, flush_threshold: int, flush_interval: Optional[float], auto_flush: bool
    ) -> WriteBackCache:
        if self.closed:
            raise ClosedError("vault is closed")
        return WriteBackCache(
            self._core, cap_bytes, flush_threshold, flush_interval, auto_flush, self._before_flush
        )

    def _before_flush(self) -> None:
        """Before the cache writes a batch: ``ClosedError`` once closed, and the injected clock's
        time pushed into the file."""
        self._native  # noqa: B018

    # -- maintenance -------------------------------------------------------------------------
    def optimize(self) -> None:
        """Reclaim abandoned uploads and free space (``VACUUM``); the file shrinks."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._file.optimize()

    def stats(self) -> Dict[str, Any]:
        """Health figures of the vault and its file:

        ``keys``; ``logical_bytes`` (sum of value sizes); ``stored_bytes`` (bytes really held for
        them: inline values plus each distinct content once) and ``bytes_ratio`` (logical /
        stored); ``unique_values`` (distinct values) and ``dedup_ratio`` (keys per distinct
        value); ``chunks`` and ``chunk_bytes`` (chunk references and what they stand for);
        ``unique_chunks`` (distinct stored contents); ``expired_keys`` and its alias
        ``expired_not_pruned`` (awaiting :meth:`prune`); the cache policy (``max_bytes``,
        ``eviction``, ``dedup``) with ``evictions`` so far, and ``hits``, ``misses`` and
        ``hit_ratio`` of reads while reads are tracked (least-recently/frequently-used);
        ``pending_uploads`` (streams not finished); ``columns`` (name ->
        ``{"dtype", "length", "bytes"}``); ``file_bytes``, ``wal_bytes`` (0 in memory),
        ``page_size`` and ``free_pages`` (reclaimed by :meth:`optimize`).

        >>> v = KVault(":memory:"); v["k"] = b"abc"; s = v.stats(); s["keys"], s["logical_bytes"]
        (1, 3)
        """
        self._file.flush()
        (
            keys,
            logical,
            chunks,
            chunk_bytes,
            pending,
            inline,
            unique,
            content,
            expired,
            page_size,
            _,
            free,
        ) = self._native.table_stats()
        stored = inline + content
        file_bytes, wal_bytes = self._file.size_on_disk()
        return {
            "keys": keys,
            "logical_bytes": logical,
            "stored_bytes": stored,
            "bytes_ratio": (logical / stored) if stored else 1.0,
            "chunks": chunks,
            "chunk_bytes": chunk_bytes,
            "unique_chunks": unique,
            "expired_keys": expired,
            "expired_not_pruned": expired,
            **self._cache_figures(keys),
            **self._history_figures(),
            "pending_uploads": pending,
            "columns": {
                name: {"dtype": dtype, "length": length, "bytes": nbytes}
                for name, dtype, length, nbytes in columns_summary(self._file.native)
            },
            "file_bytes": file_bytes,
            "wal_bytes": wal_bytes,
            "page_size": page_size,
            "free_pages": free,
        }

    def check(self) -> List[str]:
        """Run SQLite's integrity check plus the vault's own invariants (chunk counts and sizes,
        ownerless chunks, abandoned uploads, column lengths and offsets). Returns every problem
        found, as text; an empty list means healthy. Never raises for a problem in the data.

        >>> KVault(":memory:").check()
        []
        """
        self._native  # noqa: B018 - raises ClosedError when closed
        return self._file.check()

    def backup(self, dest: Union[str, os.PathLike[str]]) -> None:
        """Write a consistent copy of the whole file (every table and column) to ``dest``, with
        SQLite's online backup API, while other writers keep writing. ``dest`` must not exist.
        The copy of an encrypted vault is encrypted with the same key."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._file.backup(dest)

    def rekey(self, new_key: Union[str, bytes]) -> None:
        """Re-encrypt the file (every table and column on it) with ``new_key``: a ``str``
        passphrase or 32 raw ``bytes``. Every page is rewritten in one transaction, so it costs
        about a write of the whole file. Other handles and processes still using the old key
        fail on their next read; this handle (and a pickled copy of it) uses the new key.
        Only for a vault opened with a key (:class:`InvalidArgument` otherwise: a plain file is
        not encrypted in place); not inside a transaction."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._file.rekey(new_key)

    def reclaim_orphans(self) -> int:
        """Delete the chunks of uploads whose writing process died (this also happens
        automatically when a vault is opened). Returns how many uploads were reclaimed."""
        return self._native.reclaim_orphans()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the main file and truncate it."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._file.checkpoint()

    def close(self) -> None:
        """Flush the cache and close the file. Idempotent; any later use raises
        :class:`ClosedError`. A handle from :meth:`branch` closes only itself."""
        if self._core is None:
            return
        if self._branch_handle:
            self._stop_caches()
            self._core = None
            self._backend = ClosedBackend()  # type: ignore[assignment]
            return
        self._file.close()

    def _on_branch(self, core: KVaultCore) -> KVault:
        """A handle like this one (same file, options and codec) on ``core``'s branch."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._core = core
        other._backend = DirectBackend(core, self._codec.decode)
        # A copy pickled (or reopened by a data loader's worker) opens the same branch.
        other._open_args = dict(self._open_args, branch=BranchesCore(core).current)
        other._branch_handle = True
        self._file.attach(other)
        return other

    def __del__(self) -> None:
        # Best effort: keep cached writes of a vault that was never closed.
        backend = getattr(self, "_backend", None)
        cache = None if backend is None else backend.cache
        if cache is not None:
            with contextlib.suppress(Exception):
                cache.stop_daemon()
                cache.flush()


def _reopen(args: Dict[str, Any]) -> KVault:
    return KVault(**args)
