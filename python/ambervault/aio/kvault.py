"""AsyncKVault: the async face of :class:`~ambervault.KVault`."""

from __future__ import annotations

import inspect
import os
from typing import (
    Any,
    Callable,
    Generator,
    List,
    Literal,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from .._args import check_int, raw_key_bytes
from .._file import fspath
from ..cache_policy import check_seconds
from ..exceptions import ClosedError, InvalidArgument
from ..kvault import KVault
from ..streams import VaultReader, VaultWriter
from ..transaction import Transaction
from ..views import Range
from . import _transfer
from ._loop_lock import LoopLock
from ._runner import DEFAULT_MAX_THREADS, ThreadRunner
from .scan import AsyncScan
from .streams import AsyncVaultReader, AsyncVaultWriter, OpenFile
from .transaction import AsyncTransaction

Key = Union[str, bytes, Tuple[Any, ...]]
T = TypeVar("T")

_KEYS_PAGE = 1000  # keys per thread call when scanning (the native page size)
_ITEMS_PAGE = 256  # values per thread call when scanning values or items
_KVAULT_OPTIONS = inspect.signature(KVault)


def _writer_with_ttl(kv: KVault, key: Key, chunk_size: Optional[int], ttl: Optional[float]) -> VaultWriter:
    """A writer for ``key`` whose value gets ``ttl`` when it is committed (``kv.open(key,
    "wb")`` has no TTL argument)."""
    raw_key_bytes(key)  # a bad key is refused before anything is read
    return VaultWriter(
        kv._native.open_writer(chunk_size),
        key,
        lambda core, name: kv._finish_writer(core, name, ttl),
    )


class AsyncKVault:
    """A :class:`~ambervault.KVault` for asyncio: the same mapping of keys to values in a
    SQLite file, with coroutine methods that run the blocking work on a small pool of threads,
    so the event loop is never blocked.

    ``AsyncKVault(path, **options)`` takes the options of :class:`~ambervault.KVault` and
    does not touch the file yet: ``await`` it, enter ``async with``, or make any call, and the
    file is opened on a vault thread. ``AsyncKVault(kvault)`` wraps an open ``KVault``; then
    :meth:`aclose` leaves that vault open for its owner to close.

    Cancelling a task cancels its pending call; a call that already started on a thread
    finishes there before the cancellation is raised, so every call happens entirely or not
    at all. Streamed writes and transactions cancelled halfway leave the keys as they were.

    :param path_or_kvault: a file path (``str``, ``os.PathLike``, or ``":memory:"``) or an open
        :class:`~ambervault.KVault`.
    :param max_threads: how many calls of this vault may run at once on its threads (default
        4). An open transaction runs on one more thread of its own.
    :param options: the keyword arguments of :class:`~ambervault.KVault` (``chunk_size``,
        ``table``, ``read_only``, ``default_ttl``, ...), only with a path.

    >>> import asyncio
    >>> from ambervault.aio import AsyncKVault
    >>> async def main():
    ...     async with AsyncKVault(":memory:") as vault:
    ...         await vault.put("greeting", b"hello")
    ...         await vault.put(("user", 1), {"name": "Ada"})
    ...         return await vault.get("greeting"), await vault.get(("user", 1))
    >>> asyncio.run(main())
    (b'hello', {'name': 'Ada'})
    """

    def __init__(
        self,
        path_or_kvault: Union[str, os.PathLike[str], KVault],
        *,
        max_threads: int = DEFAULT_MAX_THREADS,
        **options: Any,
    ) -> None:
        self._kv: Optional[KVault] = None
        if isinstance(path_or_kvault, KVault):
            if options:
                raise TypeError(
                    f"options ({', '.join(sorted(options))}) apply when opening a path, not to an open KVault"
                )
            self._kv = path_or_kvault
            self._owns_kv = False
            self.path = path_or_kvault.path
        else:
            self.path = fspath(path_or_kvault, "AsyncKVault takes a KVault or a path")
            # Unknown option names are refused now, not later on a thread.
            _KVAULT_OPTIONS.bind(self.path, **options)
            self._owns_kv = True
        self._options = options
        self._runner = ThreadRunner(max_threads)
        if self._kv is not None:
            self._runner.file = self._kv._file
        self._opening = LoopLock()

    # -- opening and closing ---------------------------------------------------------------------
    def _open_sync(self) -> None:
        # Runs on a vault thread; records the vault there, so a task cancelled meanwhile
        # still leaves it where aclose() finds it.
        kv = KVault(self.path, **self._options)
        self._runner.file = kv._file
        self._kv = kv

    async def _vault(self) -> KVault:
        """The open synchronous vault, opened on a thread on first use."""
        kv = self._kv
        if kv is None:
            if self._runner.closed:
                raise ClosedError("vault is closed")
            async with self._opening.get():
                if self._kv is None:
                    await self._runner.call(self._open_sync)
            kv = self._kv
            assert kv is not None
        return kv

    async def _opened(self) -> AsyncKVault:
        await self._vault()
        return self

    def __await__(self) -> Generator[Any, None, AsyncKVault]:
        return self._opened().__await__()

    async def __aenter__(self) -> AsyncKVault:
        return await self._opened()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.aclose()

    def _close_sync(self) -> None:
        if self._owns_kv and self._kv is not None:
            self._kv.close()

    async def aclose(self) -> None:
        """Wait for an open transaction and for the calls under way, then close the file (if
        this object opened it) and stop the threads. Idempotent; any later call raises
        :class:`~ambervault.ClosedError`.

        :raises InvalidArgument: inside this vault's own transaction.
        """
        await self._runner.close(self._close_sync)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (or the wrapped vault was closed)."""
        return self._runner.closed or (self._kv is not None and self._kv.closed)

    @property
    def max_threads(self) -> int:
        """How many calls of this vault may run at once on its pool."""
        return self._runner.max_threads

    @property
    def kvault(self) -> KVault:
        """The synchronous :class:`~ambervault.KVault` underneath. Its methods block: call
        them through :meth:`run` from async code.

        :raises ClosedError: once closed; :raises InvalidArgument: before the file is opened.
        """
        if self._runner.closed:
            raise ClosedError("vault is closed")
        if self._kv is None:
            raise InvalidArgument("the vault is not open yet: await it (or enter async with) first")
        return self._kv

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self._kv is not None else "not opened"
        return f"<ambervault.aio.AsyncKVault {self.path!r} {state}>"

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on this vault's threads (inside a transaction: on its thread), for
        what has no coroutine method here: ``await vault.run(vault.kvault.stats)``.

        >>> import asyncio
        >>> async def main():
        ...     async with AsyncKVault(":memory:") as vault:
        ...         await vault.put("k", b"abc")
        ...         return await vault.run(vault.kvault.info, "k")
        >>> asyncio.run(main())["size"]
        3
        """
        await self._vault()
        return await self._runner.call(func, *args)

    # -- single keys -----------------------------------------------------------------------------
    async def get(
        self, key: Key, default: Any = None, decode: bool = False, version: Optional[int] = None
    ) -> Any:
        """The value of ``key``, or ``default`` when it is absent (see
        :meth:`ambervault.KVault.get` for ``decode`` and ``version``)."""
        kv = await self._vault()
        return await self._runner.call(kv.get, key, default, decode, version)

    async def put(
        self,
        key: Key,
        value: Any,
        ttl: Optional[float] = None,
        if_version: Optional[int] = None,
        if_absent: bool = False,
    ) -> None:
        """Store ``value`` under ``key``, as :meth:`ambervault.KVault.put` (same options and
        errors: ``TypeError`` for a value that cannot be stored, :class:`~ambervault.Conflict`
        when a condition does not hold)."""
        kv = await self._vault()
        await self._runner.call(kv.put, key, value, ttl, if_version, if_absent)

    async def delete(self, key: Key) -> bool:
        """Remove ``key``; returns whether it existed."""
        kv = await self._vault()
        return await self._runner.call(kv.delete, key)

    async def exists(self, key: Key) -> bool:
        """Whether ``key`` is present."""
        kv = await self._vault()
        return await self._runner.call(kv.exists, key)

    async def length(self) -> int:
        """How many keys the table holds (``len`` of the synchronous vault)."""
        kv = await self._vault()
        return await self._runner.call(len, kv)

    # -- batches ---------------------------------------------------------------------------------
    async def get_many(self, keys: Union[List[Key], Tuple[Key, ...]], default: Any = None) -> List[Any]:
        """Values of ``keys`` in order (``default`` where absent), read in one call."""
        kv = await self._vault()
        return await self._runner.call(kv.get_many, keys, default)

    async def put_many(
        self,
        items: Union[Mapping[Key, Any], List[Tuple[Key, Any]], Tuple[Tuple[Key, Any], ...]],
        ttl: Optional[float] = None,
    ) -> None:
        """Store many pairs in one transaction (all or, on error, none), as
        :meth:`ambervault.KVault.put_many`."""
        kv = await self._vault()
        await self._runner.call(kv.put_many, items, ttl)

    # -- scans -----------------------------------------------------------------------------------
    def keys(
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
    ) -> AsyncScan[Key]:
        """Keys in bytewise order for ``async for``, with the filters of
        :meth:`ambervault.KVault.keys`, fetched 1000 per thread call.

        >>> import asyncio
        >>> async def main():
        ...     async with AsyncKVault(":memory:") as vault:
        ...         await vault.put_many({"img:1": b"", "img:2": b"", "txt:1": b""})
        ...         return [key async for key in vault.keys(prefix="img:")]
        >>> asyncio.run(main())
        ['img:1', 'img:2']
        """
        Range(prefix, start, end, limit, reverse)  # bad filters are refused now

        async def start_scan() -> Any:
            kv = await self._vault()
            return iter(kv.keys(prefix, start, end, limit, reverse))

        return AsyncScan(self._runner, start_scan, _KEYS_PAGE)

    def values(
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
    ) -> AsyncScan[Any]:
        """Values in key order for ``async for``, with the filters of :meth:`keys`, fetched
        256 per thread call."""
        Range(prefix, start, end, limit, reverse)

        async def start_scan() -> Any:
            kv = await self._vault()
            return iter(kv.values(prefix, start, end, limit, reverse))

        return AsyncScan(self._runner, start_scan, _ITEMS_PAGE)

    def items(
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        limit: Optional[int] = None,
        reverse: bool = False,
    ) -> AsyncScan[Tuple[Key, Any]]:
        """``(key, value)`` pairs in key order for ``async for``, with the filters of
        :meth:`keys`, fetched 256 per thread call."""
        Range(prefix, start, end, limit, reverse)

        async def start_scan() -> Any:
            kv = await self._vault()
            return iter(kv.items(prefix, start, end, limit, reverse))

        return AsyncScan(self._runner, start_scan, _ITEMS_PAGE)

    # -- transactions ----------------------------------------------------------------------------
    def transaction(self) -> AsyncTransaction:
        """A transaction for ``async with``: every call of this vault awaited inside the block
        (and of an :class:`AsyncColumnVault` made from it) is atomic; other tasks' calls wait
        until it ends (see :class:`AsyncTransaction`).

        >>> import asyncio
        >>> async def main():
        ...     async with AsyncKVault(":memory:") as vault:
        ...         async with vault.transaction():
        ...             await vault.put("a", 1)
        ...             await vault.put("b", 2)
        ...         return await vault.get_many(["a", "b"])
        >>> asyncio.run(main())
        [1, 2]
        """

        async def begin() -> Callable[[], Transaction]:
            return (await self._vault()).transaction

        return AsyncTransaction(self._runner, begin)

    # -- streaming -------------------------------------------------------------------------------
    @overload
    def open(
        self, key: Key, mode: Literal["rb"] = "rb", chunk_size: Optional[int] = None
    ) -> OpenFile[AsyncVaultReader]: ...

    @overload
    def open(
        self, key: Key, mode: Literal["wb"], chunk_size: Optional[int] = None
    ) -> OpenFile[AsyncVaultWriter]: ...

    def open(self, key: Key, mode: str = "rb", chunk_size: Optional[int] = None) -> OpenFile[Any]:
        """Open a value as an async binary file: ``"rb"`` gives a seekable
        :class:`AsyncVaultReader` (:class:`~ambervault.NotFound` for a missing key), ``"wb"`` an
        :class:`AsyncVaultWriter` whose bytes become the value when it is closed. ``await`` the
        result, or use it with ``async with`` (which closes the file; a writer commits, or
        discards on an exception or a cancellation)."""
        if mode == "rb":

            async def open_reader() -> AsyncVaultReader:
                kv = await self._vault()
                reader: VaultReader = await self._runner.call(kv.open, key, "rb")
                return AsyncVaultReader(self._runner, reader)

            return OpenFile(open_reader)
        if mode == "wb":

            async def open_writer() -> AsyncVaultWriter:
                kv = await self._vault()
                writer: VaultWriter = await self._runner.call(kv.open, key, "wb", chunk_size)
                return AsyncVaultWriter(self._runner, writer)

            return OpenFile(open_writer)
        raise InvalidArgument(f"mode must be 'rb' or 'wb', not {mode!r}")

    async def put_file(
        self,
        key: Key,
        source: Any,
        size: Optional[int] = None,
        chunk_size: Optional[int] = None,
        ttl: Optional[float] = None,
    ) -> int:
        """Stream a value from ``source`` without holding it in memory, one chunk per thread
        call; it becomes visible only when complete. Returns the number of bytes stored.

        ``source`` is a path, a binary file (its ``read(n)`` runs on a vault thread), an async
        file (``read(n)`` a coroutine function, e.g. an :class:`AsyncVaultReader`), an async
        iterable of bytes chunks, or an iterable of bytes chunks. With ``size``, exactly that
        many bytes are read (a shorter source stores nothing and raises
        :class:`~ambervault.InvalidArgument`). On an error or a cancellation the pending value
        is discarded and the key keeps its old value. ``ttl`` as in :meth:`put`.
        """
        if size is not None and check_int("size", size) < 0:
            raise InvalidArgument(f"size must be >= 0, not {size}")
        if chunk_size is not None and check_int("chunk_size", chunk_size) <= 0:
            raise InvalidArgument(f"chunk_size must be positive, not {chunk_size}")
        if ttl is not None:
            check_seconds("ttl", ttl, allow_zero=True)
        raw_key_bytes(key)
        kv = await self._vault()
        step = kv.chunk_size if chunk_size is None else chunk_size
        return await _transfer.put_file(
            self._runner, lambda: _writer_with_ttl(kv, key, chunk_size, ttl), source, size, step
        )

    async def get_to_file(self, key: Key, dest: Any, chunk_size: Optional[int] = None) -> int:
        """Stream the value of ``key`` into ``dest``, one chunk per thread call; returns the
        number of bytes written. ``dest`` is a path (written as ``<path>.part`` and renamed
        when complete, so a failed or cancelled copy leaves no partial file), an async file
        (``write`` a coroutine function) or a binary file (its ``write`` runs on a vault
        thread).

        :raises NotFound: for a missing key, before ``dest`` is touched.
        """
        if chunk_size is not None and check_int("chunk_size", chunk_size) <= 0:
            raise InvalidArgument(f"chunk_size must be positive, not {chunk_size}")
        kv = await self._vault()
        step = kv.chunk_size if chunk_size is None else chunk_size
        return await _transfer.get_to_file(self._runner, lambda: kv.open(key), dest, step)
