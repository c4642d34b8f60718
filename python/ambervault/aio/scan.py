"""AsyncScan: ``async for`` over a vault scan, fetched a page at a time on the vault's threads."""

from __future__ import annotations

import itertools
from typing import AsyncIterator, Awaitable, Callable, Generic, Iterator, List, TypeVar

from ._runner import ThreadRunner

T = TypeVar("T")


def _take(source: Iterator[T], count: int) -> List[T]:
    """Up to ``count`` items of ``source`` (runs on a vault thread)."""
    return list(itertools.islice(source, count))


class AsyncScan(Generic[T]):
    """An async iterable over keys, values, items or column elements.

    Each ``async for`` starts a new scan. Items are fetched ``page_size`` at a time with one
    thread call per page (not one per item), so memory stays at about a page and the event
    loop runs between pages. Like the synchronous scans, a scan reads page by page: writes made
    while it runs may or may not be seen by later pages.
    """

    def __init__(
        self, runner: ThreadRunner, start: Callable[[], Awaitable[Iterator[T]]], page_size: int
    ) -> None:
        self._runner = runner
        self._start = start
        self._page_size = page_size

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        source = await self._start()
        while True:
            page = await self._runner.call(_take, source, self._page_size)
            for item in page:
                yield item
            if len(page) < self._page_size:
                return

    async def to_list(self) -> List[T]:
        """Every item of the scan, in order, as a list.

        >>> import asyncio, ambervault.aio
        >>> async def main():
        ...     async with ambervault.aio.AsyncKVault(":memory:") as vault:
        ...         await vault.put_many({"a": 1, "b": 2})
        ...         return await vault.keys().to_list()
        >>> asyncio.run(main())
        ['a', 'b']
        """
        return [item async for item in self]
