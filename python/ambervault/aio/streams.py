"""Async file objects over stored values: :class:`AsyncVaultReader` and
:class:`AsyncVaultWriter` (``await vault.open(key)``, ``await vault.open(key, "wb")``), and
:class:`OpenFile`, what ``vault.open`` returns: awaitable, and usable with ``async with``."""

from __future__ import annotations

import io
from typing import Any, Awaitable, Callable, Generator, Generic, Optional, TypeVar, Union

from ..exceptions import ClosedError
from ..streams import VaultReader, VaultWriter
from ._loop_lock import LoopLock
from ._runner import ThreadRunner

T = TypeVar("T")


class _AsyncFile:
    """What both async files share: the runner, and one call at a time per file (calls of
    one file from several tasks run in the order they were made)."""

    def __init__(self, runner: ThreadRunner, name: Any) -> None:
        self._runner = runner
        self._turn = LoopLock()
        self.name = name

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        async with self._turn.get():
            return await self._runner.call(func, *args)

    async def _finish(self, func: Callable[..., T], *args: Any) -> T:
        # Clean-up (close, discard): never withdrawn, even while the task is being cancelled.
        async with self._turn.get():
            return await self._runner.finish(func, *args)


class AsyncVaultReader(_AsyncFile):
    """A seekable, read-only async binary file over one stored value (the async face of
    :class:`~ambervault.VaultReader`). Reads fetch only the chunks they touch, on the vault's
    threads; a value overwritten while it is open raises
    :class:`~ambervault.ValueChangedError` on the next read.

    >>> import asyncio, ambervault.aio
    >>> async def main():
    ...     async with ambervault.aio.AsyncKVault(":memory:") as vault:
    ...         await vault.put("clip", b"0123456789")
    ...         async with vault.open("clip") as f:
    ...             await f.seek(4)
    ...             return await f.read(3), f.size
    >>> asyncio.run(main())
    (b'456', 10)
    """

    def __init__(self, runner: ThreadRunner, reader: VaultReader) -> None:
        super().__init__(runner, reader.name)
        self._reader = reader

    @property
    def size(self) -> int:
        """Length of the value in bytes."""
        return self._reader.size

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._reader.closed

    def _check_open(self) -> None:
        if self._reader.closed:
            raise ClosedError("reader is closed")

    async def read(self, size: Optional[int] = -1) -> bytes:
        """Read up to ``size`` bytes (everything left when ``size`` is negative or None); ``b""``
        at the end."""
        self._check_open()
        return await self._call(self._reader.read, size)

    async def readall(self) -> bytes:
        """Read everything from the current position to the end."""
        return await self.read(-1)

    async def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` relative to ``whence`` (``SEEK_SET``, ``SEEK_CUR``, ``SEEK_END``);
        returns the new position."""
        self._check_open()
        return await self._call(self._reader.seek, offset, whence)

    async def tell(self) -> int:
        """The current position."""
        self._check_open()
        return await self._call(self._reader.tell)

    async def close(self) -> None:
        """Release the reader. Idempotent."""
        if not self._reader.closed and not self._runner.closed:
            await self._finish(self._reader.close)

    async def __aenter__(self) -> AsyncVaultReader:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ambervault.aio.AsyncVaultReader {self.name!r} size={self.size}>"


class AsyncVaultWriter(_AsyncFile):
    """An async write-only binary file whose bytes become the value of its key when it is
    closed without error (the async face of :class:`~ambervault.VaultWriter`). Bytes are
    written in chunks as they come, under a pending id, so readers see the old value until
    :meth:`close` swaps the new one in atomically.

    Leaving ``async with`` through an exception, or through the cancellation of the task,
    discards everything written: the key keeps its old value (or stays absent), and nothing is
    left half-written in the file. So does :meth:`discard`.

    >>> import asyncio, ambervault.aio
    >>> async def main():
    ...     async with ambervault.aio.AsyncKVault(":memory:") as vault:
    ...         async with vault.open("log", "wb") as f:
    ...             await f.write(b"hello ")
    ...             await f.write(b"world")
    ...         return await vault.get("log")
    >>> asyncio.run(main())
    b'hello world'
    """

    def __init__(self, runner: ThreadRunner, writer: VaultWriter) -> None:
        super().__init__(runner, writer.name)
        self._writer = writer

    @property
    def closed(self) -> bool:
        """Whether the writer was closed or discarded."""
        return self._writer.closed

    async def write(self, data: Any) -> int:
        """Append bytes-like ``data``; returns its length.

        :raises ClosedError: once the writer is closed or discarded.
        """
        if self._writer.closed:
            raise ClosedError("writer is closed")
        return await self._call(self._writer.write, data)

    async def tell(self) -> int:
        """Number of bytes written so far."""
        # On a thread too: the count sits behind the lock a running write holds.
        return await self._call(self._writer.tell)

    async def close(self) -> None:
        """Make the written bytes the key's value, atomically, and close. Once the commit has
        started it finishes even if the task is cancelled meanwhile; cancelled before it
        started, the bytes are discarded instead. Idempotent."""
        if self._writer.closed:
            return
        try:
            await self._call(self._writer.close)
        except BaseException:
            await self.discard()
            raise

    async def discard(self) -> None:
        """Throw away everything written and close; the old value (if any) stays. Idempotent."""
        if not self._writer.closed and not self._runner.closed:
            await self._finish(self._writer.discard)

    async def __aenter__(self) -> AsyncVaultWriter:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.discard()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ambervault.aio.AsyncVaultWriter {self.name!r} {state}>"


F = TypeVar("F", bound=Union[AsyncVaultReader, AsyncVaultWriter])


class OpenFile(Generic[F]):
    """What ``vault.open(...)`` returns: ``await`` it for the file (then close it yourself), or
    use it as ``async with vault.open(...) as f:``, which closes the file at the end (a writer
    commits, or discards on an exception)."""

    def __init__(self, opener: Callable[[], Awaitable[F]]) -> None:
        self._opener = opener
        self._file: Optional[F] = None

    def __await__(self) -> Generator[Any, None, F]:
        return self._opener().__await__()

    async def __aenter__(self) -> F:
        self._file = await self._opener()
        return self._file

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        file, self._file = self._file, None
        if file is not None:
            await file.__aexit__(exc_type, exc, tb)
