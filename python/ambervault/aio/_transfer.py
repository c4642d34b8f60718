"""Moving bytes between files and stored values, a chunk per thread call: the loops behind
``AsyncKVault.put_file`` and ``AsyncKVault.get_to_file``.

Each chunk is one call on the vault's threads (reading a synchronous source and writing the
chunk together), so the event loop runs between chunks and a cancellation takes effect at the
next chunk boundary: the pending value is then discarded, and the key keeps its old value.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
from typing import Any, BinaryIO, Callable, Iterator, Optional

from ..exceptions import InvalidArgument
from ..streams import VaultReader, VaultWriter, file_descriptor, grow_pipe, source_descriptor
from ._runner import ThreadRunner

_END: Any = object()


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _pump_read(read: Callable[[int], Any], writer: VaultWriter, count: int) -> int:
    """Read up to ``count`` bytes with a synchronous ``read`` and write them; 0 at the end."""
    data = read(count)
    if not data:
        return 0
    writer.write(data)
    return len(data)


def _pump_next(chunks: Iterator[Any], writer: VaultWriter, remaining: Optional[int]) -> int:
    """Write the next chunk of a synchronous iterable (cut to ``remaining``); -1 at the end."""
    data = next(chunks, _END)
    if data is _END:
        return -1
    if remaining is not None and len(data) > remaining:
        data = memoryview(data)[:remaining]
    writer.write(data)
    return len(data)


def _copy_chunk(reader: VaultReader, write: Callable[[bytes], Any], count: int) -> int:
    """Read up to ``count`` bytes of a value and hand them to a synchronous ``write``."""
    data = reader.read(count)
    if data:
        write(data)
    return len(data)


def _replace(part: str, dest: str) -> None:
    os.replace(part, dest)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


async def put_file(
    runner: ThreadRunner,
    open_writer: Callable[[], VaultWriter],
    source: Any,
    size: Optional[int],
    step: int,
) -> int:
    """Stream ``source`` into a writer opened (on a thread) by ``open_writer``; commit when
    the source ends, or discard on any error or cancellation. Returns the bytes stored.

    ``source``: a path, a binary file (``read(n)``, called on a thread), an object whose
    ``read(n)`` is a coroutine function, an async iterable of bytes chunks, or an iterable of
    bytes chunks (advanced on a thread). With ``size``, exactly that many bytes are read.
    """
    read_async = None
    if _is_path(source):
        kind = "path"
    elif hasattr(source, "read"):
        kind = "read"
        if inspect.iscoroutinefunction(source.read):
            kind, read_async = "aread", source.read
    elif isinstance(source, collections.abc.AsyncIterable):
        kind = "aiter"
    elif isinstance(source, collections.abc.Iterable) and not isinstance(
        source, (bytes, bytearray, memoryview, str)
    ):
        kind = "iter"
    else:
        raise TypeError(
            "put_file reads a path, a binary file, an async file, or a (async) iterable of bytes "
            f"chunks, not {type(source).__name__} (use put() for a value in memory)"
        )
    if kind == "read":
        grow_pipe(source_descriptor(source), step)
    writer = await runner.call(open_writer)
    opened: Optional[BinaryIO] = None
    total = 0
    try:
        if kind == "path":
            opened = await runner.call(open, os.fspath(source), "rb")
            source = opened
        if kind in ("path", "read", "aread"):
            while size is None or total < size:
                count = step if size is None else min(step, size - total)
                if read_async is not None:
                    data = await read_async(count)
                    if not data:
                        break
                    moved = await runner.call(writer.write, data)
                else:
                    moved = await runner.call(_pump_read, source.read, writer, count)
                    if not moved:
                        break
                total += moved
        elif kind == "aiter":
            async for data in source:
                if size is not None and len(data) > size - total:
                    data = memoryview(data)[: size - total]
                total += await runner.call(writer.write, data)
                if size is not None and total >= size:
                    break
        else:
            chunks = iter(source)
            while size is None or total < size:
                moved = await runner.call(_pump_next, chunks, writer, None if size is None else size - total)
                if moved < 0:
                    break
                total += moved
        if size is not None and total < size:
            raise InvalidArgument(f"reader ended after {total} of the {size} bytes promised by size=")
        await runner.call(writer.close)
        return total
    except BaseException:
        await runner.finish(writer.discard)
        raise
    finally:
        if opened is not None:
            await runner.finish(opened.close)


async def get_to_file(
    runner: ThreadRunner,
    open_reader: Callable[[], VaultReader],
    dest: Any,
    step: int,
) -> int:
    """Stream a value (reader opened on a thread by ``open_reader``) into ``dest``: a path
    (written as ``<path>.part`` and renamed when complete, removed on error or
    cancellation), an object whose ``write`` is a coroutine function, or a binary file
    (``write`` called on a thread). Returns the bytes written."""
    if not (_is_path(dest) or hasattr(dest, "write")):
        raise TypeError(f"get_to_file writes to a path or a binary file, not {type(dest).__name__}")
    reader = await runner.call(open_reader)  # a missing key fails here, before dest is touched
    total = 0
    try:
        if _is_path(dest):
            target = os.fspath(dest)
            part = target + ".part"
            out: BinaryIO = await runner.call(open, part, "wb")
            try:
                while True:
                    moved = await runner.call(_copy_chunk, reader, out.write, step)
                    if not moved:
                        break
                    total += moved
                await runner.call(out.close)
                await runner.call(_replace, part, target)
            except BaseException:
                await runner.finish(out.close)
                await runner.finish(_remove, part)
                raise
        elif inspect.iscoroutinefunction(dest.write):
            while True:
                data = await runner.call(reader.read, step)
                if not data:
                    break
                await dest.write(data)
                total += len(data)
        else:
            grow_pipe(file_descriptor(dest), step)
            while True:
                moved = await runner.call(_copy_chunk, reader, dest.write, step)
                if not moved:
                    break
                total += moved
        return total
    finally:
        await runner.finish(reader.close)
