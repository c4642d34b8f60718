"""AsyncColumnVault and AsyncColumn: the async faces of :class:`~ambervault.ColumnVault` and
:class:`~ambervault.Column`."""

from __future__ import annotations

import inspect
import os
from typing import Any, AsyncIterator, Callable, Generator, Iterable, List, Optional, Tuple, TypeVar, Union

from .._file import fspath
from ..columns import Column, ColumnVault
from ..exceptions import ClosedError, InvalidArgument
from ..kvault import KVault
from ..transaction import Transaction
from ._loop_lock import LoopLock
from ._runner import DEFAULT_MAX_THREADS, ThreadRunner
from .kvault import AsyncKVault
from .scan import AsyncScan
from .transaction import AsyncTransaction

T = TypeVar("T")

_ELEMENTS_PAGE = 8192  # column elements per thread call when iterating
_COLUMN_VAULT_OPTIONS = inspect.signature(ColumnVault)


class AsyncColumn:
    """One typed column of an :class:`AsyncColumnVault`: list-like, with coroutine methods
    that run on the vault's threads (inside a transaction, on its thread).

    >>> import asyncio
    >>> from ambervault.aio import AsyncColumnVault
    >>> async def main():
    ...     async with AsyncColumnVault(":memory:") as cv:
    ...         loss = await cv.create_column("loss", "f64")
    ...         await loss.extend([0.9, 0.7, 0.4])
    ...         await loss.append(0.3)
    ...         return await loss.get(-1), await loss.get(slice(0, 2)), await loss.length()
    >>> asyncio.run(main())
    (0.3, [0.9, 0.7], 4)
    """

    def __init__(self, owner: AsyncColumnVault, column: Column) -> None:
        self._owner = owner
        self._runner = owner._runner
        self._column = column

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        self._owner._check_open()  # the column closes with its vault, even on a shared file
        return await self._runner.call(func, *args)

    @property
    def name(self) -> str:
        """The column's name."""
        return self._column.name

    @property
    def dtype(self) -> str:
        """The column's dtype (``"i64"``, ``"f32"``, ``"str"``, ``"bytes:16"``, ...)."""
        return self._column.dtype

    @property
    def column(self) -> Column:
        """The synchronous :class:`~ambervault.Column` underneath (its methods block)."""
        return self._column

    def __repr__(self) -> str:
        return f"<ambervault.aio.AsyncColumn {self.name!r} dtype={self.dtype}>"

    async def length(self) -> int:
        """How many elements the column holds."""
        return await self._call(len, self._column)

    async def get(self, index: Union[int, slice]) -> Any:
        """The element at ``index`` (negative counts from the end; ``IndexError`` out of
        range), or a list for a ``slice`` (steps work, as for lists)."""
        return await self._call(self._column.__getitem__, index)

    async def set(self, index: Union[int, slice], value: Any) -> None:
        """Replace the element at ``index`` (or the elements of a slice, from an iterable of
        the same length)."""
        await self._call(self._column.__setitem__, index, value)

    async def delete(self, index: Union[int, slice]) -> None:
        """Remove the element at ``index`` (or a slice); later elements move down."""
        await self._call(self._column.__delitem__, index)

    async def append(self, value: Any) -> None:
        """Append one element."""
        await self._call(self._column.append, value)

    async def extend(self, values: Iterable[Any]) -> None:
        """Append every element of ``values`` in one transaction (a numpy array of a
        fixed-width column in bulk); if any element is refused, nothing is written."""
        await self._call(self._column.extend, values)

    async def insert(self, index: int, value: Any) -> None:
        """Insert before ``index`` (clamped like ``list.insert``)."""
        await self._call(self._column.insert, index, value)

    async def pop(self, index: int = -1) -> Any:
        """Remove and return the element at ``index`` (the last by default)."""
        return await self._call(self._column.pop, index)

    async def clear(self) -> None:
        """Remove every element."""
        await self._call(self._column.clear)

    async def to_numpy(self, start: int = 0, stop: Optional[int] = None) -> Any:
        """Elements ``start:stop`` as a numpy array of the column's dtype (needs numpy)."""
        return await self._call(self._column.to_numpy, start, stop)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.elements().__aiter__()

    def elements(self) -> AsyncScan[Any]:
        """Every element in order for ``async for``, fetched 8192 per thread call (``async for
        x in column`` does the same)."""

        async def start() -> Any:
            self._owner._check_open()
            return iter(self._column)

        return AsyncScan(self._runner, start, _ELEMENTS_PAGE)


class AsyncColumnVault:
    """A :class:`~ambervault.ColumnVault` for asyncio: named, typed columns whose operations
    run on a small pool of threads.

    ``AsyncColumnVault(async_kvault)`` keeps the columns in that vault's file and shares its
    threads and transactions, so ``async with kv.transaction():`` spans values and columns.
    It also takes a :class:`~ambervault.KVault`, a :class:`~ambervault.ColumnVault` (wrapped
    and left open by :meth:`aclose`) or a path. As with :class:`AsyncKVault`, nothing is opened
    until the object is awaited, entered with ``async with``, or first used.

    :param source: an :class:`AsyncKVault`, a ``KVault``, a ``ColumnVault`` or a path.
    :param max_threads: the thread bound (see :class:`AsyncKVault`); not with an
        ``AsyncKVault``, whose threads are shared.
    :param options: keyword arguments of :class:`~ambervault.ColumnVault`
        (``min_chunk_bytes``, ``max_chunk_bytes``, and for a path ``read_only``,
        ``checkpoints``); not with a ``ColumnVault``.
    """

    def __init__(
        self,
        source: Union[AsyncKVault, KVault, ColumnVault, str, os.PathLike[str]],
        *,
        max_threads: Optional[int] = None,
        **options: Any,
    ) -> None:
        self._cv: Optional[ColumnVault] = None
        self._kv: Optional[AsyncKVault] = None
        self._base: Union[KVault, str, None] = None
        if isinstance(source, AsyncKVault):
            if max_threads is not None:
                raise InvalidArgument(
                    "an AsyncColumnVault on an AsyncKVault shares its threads: drop max_threads"
                )
            self._kv = source
            self._runner = source._runner
            self._owns_runner = False
        else:
            self._runner = ThreadRunner(DEFAULT_MAX_THREADS if max_threads is None else max_threads)
            self._owns_runner = True
        if isinstance(source, ColumnVault):
            if options:
                raise TypeError(
                    f"options ({', '.join(sorted(options))}) apply when opening, not to an open ColumnVault"
                )
            self._cv = source
            self._owns_cv = False
            self.path = source.path
        else:
            if isinstance(source, AsyncKVault):
                self.path = source.path
            elif isinstance(source, KVault):
                self._base, self.path = source, source.path
            else:
                self.path = self._base = fspath(source, "AsyncColumnVault takes a vault or a path")
            _COLUMN_VAULT_OPTIONS.bind(self.path, **options)  # unknown options are refused now
            self._owns_cv = True
        self._options = options
        self._opening = LoopLock()
        self._closed = False
        if self._owns_runner and isinstance(source, (KVault, ColumnVault)):
            self._runner.file = source._file

    # -- opening and closing ---------------------------------------------------------------------
    def _open_sync(self, base: Union[KVault, str]) -> None:
        # Runs on a vault thread, and records the column vault there (see AsyncKVault).
        cv = ColumnVault(base, **self._options)
        if self._owns_runner:
            self._runner.file = cv._file
        self._cv = cv

    def _check_open(self) -> None:
        if self._closed or self._runner.closed:
            raise ClosedError("column vault is closed")

    async def _vault(self) -> ColumnVault:
        """The open synchronous column vault, opened on a thread on first use."""
        self._check_open()
        cv = self._cv
        if cv is None:
            async with self._opening.get():
                if self._cv is None:
                    base = self._base if self._kv is None else await self._kv._vault()
                    assert base is not None
                    await self._runner.call(self._open_sync, base)
            cv = self._cv
            assert cv is not None
        return cv

    async def _opened(self) -> AsyncColumnVault:
        await self._vault()
        return self

    def __await__(self) -> Generator[Any, None, AsyncColumnVault]:
        return self._opened().__await__()

    async def __aenter__(self) -> AsyncColumnVault:
        return await self._opened()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.aclose()

    def _close_sync(self) -> None:
        if self._owns_cv and self._cv is not None:
            self._cv.close()

    async def aclose(self) -> None:
        """Write pending appends and close what this object opened (a column vault on a
        ``KVault`` or ``AsyncKVault`` leaves that vault's file open). Waits for an open
        transaction and the calls under way first. Idempotent; later calls raise
        :class:`~ambervault.ClosedError`.

        :raises InvalidArgument: inside this vault's own transaction.
        """
        if self._closed:
            return
        if self._owns_runner:
            await self._runner.close(self._close_sync)
        elif not self._runner.closed:
            if self._runner.in_transaction():
                raise InvalidArgument("cannot close a vault inside its own transaction; leave it first")
            self._closed = True
            await self._runner.finish(self._close_sync)
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (or the vault underneath was closed)."""
        return self._closed or self._runner.closed

    @property
    def column_vault(self) -> ColumnVault:
        """The synchronous :class:`~ambervault.ColumnVault` underneath (its methods block).

        :raises ClosedError: once closed; :raises InvalidArgument: before it is opened.
        """
        self._check_open()
        if self._cv is None:
            raise InvalidArgument("the column vault is not open yet: await it (or enter async with) first")
        return self._cv

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self._cv is not None else "not opened"
        return f"<ambervault.aio.AsyncColumnVault {self.path!r} {state}>"

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on this vault's threads (see :meth:`AsyncKVault.run`)."""
        await self._vault()
        return await self._runner.call(func, *args)

    # -- columns ---------------------------------------------------------------------------------
    async def create_column(self, name: str, dtype: str) -> AsyncColumn:
        """Create a column of ``dtype``; an existing name or an unknown dtype is an
        :class:`~ambervault.InvalidArgument` (as :meth:`ambervault.ColumnVault.create_column`)."""
        cv = await self._vault()
        return AsyncColumn(self, await self._runner.call(cv.create_column, name, dtype))

    async def ensure(self, name: str, dtype: str) -> AsyncColumn:
        """The column ``name``, created with ``dtype`` if missing (an existing column of
        another dtype is an :class:`~ambervault.InvalidArgument`)."""
        cv = await self._vault()
        return AsyncColumn(self, await self._runner.call(cv.ensure, name, dtype))

    async def column(self, name: str) -> AsyncColumn:
        """The existing column ``name`` (``cv[name]``); :class:`~ambervault.NotFound` if
        missing."""
        cv = await self._vault()
        return AsyncColumn(self, await self._runner.call(cv.__getitem__, name))

    async def has_column(self, name: str) -> bool:
        """Whether a column ``name`` exists (``name in cv``)."""
        cv = await self._vault()
        return await self._runner.call(cv.__contains__, name)

    async def list_columns(self) -> List[Tuple[str, str, int]]:
        """``[(name, dtype, length), ...]`` ordered by name."""
        cv = await self._vault()
        return await self._runner.call(cv.list_columns)

    async def delete_column(self, name: str) -> bool:
        """Delete a column and its data; returns whether it existed."""
        cv = await self._vault()
        return await self._runner.call(cv.delete_column, name)

    async def rename_column(self, old: str, new: str) -> None:
        """Rename a column."""
        cv = await self._vault()
        await self._runner.call(cv.rename_column, old, new)

    def transaction(self) -> AsyncTransaction:
        """A transaction over every table of the file, for ``async with`` (see
        :meth:`AsyncKVault.transaction`)."""

        async def begin() -> Callable[[], Transaction]:
            return (await self._vault()).transaction

        return AsyncTransaction(self._runner, begin)
