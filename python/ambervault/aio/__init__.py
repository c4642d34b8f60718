"""ambervault for asyncio: :class:`AsyncKVault` and :class:`AsyncColumnVault`.

The native calls release the GIL, so each async vault runs them on a small pool of threads
(``max_threads``, 4 by default) and the event loop is never blocked. Every coroutine method
mirrors a method of :class:`~ambervault.KVault` or :class:`~ambervault.ColumnVault` and raises
the same exceptions. See ``docs/async.md``.

>>> import asyncio
>>> from ambervault.aio import AsyncKVault
>>> async def main():
...     async with AsyncKVault(":memory:") as vault:
...         await asyncio.gather(*(vault.put(f"k{i}", i) for i in range(10)))
...         return await vault.length(), await vault.get("k7")
>>> asyncio.run(main())
(10, 7)
"""

from __future__ import annotations

from .columns import AsyncColumn, AsyncColumnVault
from .kvault import AsyncKVault
from .scan import AsyncScan
from .streams import AsyncVaultReader, AsyncVaultWriter, OpenFile
from .transaction import AsyncTransaction

__all__ = [
    "AsyncColumn",
    "AsyncColumnVault",
    "AsyncKVault",
    "AsyncScan",
    "AsyncTransaction",
    "AsyncVaultReader",
    "AsyncVaultWriter",
    "OpenFile",
]
