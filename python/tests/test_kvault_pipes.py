"""Streaming through OS pipes: put_file from a pipe and get_to_file into one store the exact
bytes and grow the pipe (Linux) so the process at its other end can run a chunk ahead."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
from typing import Any, Callable, List

import pytest

from ambervault import InvalidArgument, KVault
from ambervault.aio import AsyncKVault

# Every test here asserts a pipe's capacity through fcntl's F_GETPIPE_SZ, which only Linux
# has; elsewhere grow_pipe does nothing by design and there is no capacity to read. CI runs on
# Linux, so these run there.
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="asserts pipe capacities (F_GETPIPE_SZ), which exist only on Linux",
)

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
DEFAULT_PIPE = 64 << 10


def blob(n: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"pipe-{seed}".encode()).digest(n)


def capacity(fd: int) -> int:
    import fcntl

    return int(fcntl.fcntl(fd, F_GETPIPE_SZ))


def feed(data: bytes, piece: int = 100_000) -> tuple[Any, int, threading.Thread]:
    """A pipe of the default capacity whose write end a thread fills with ``data`` and then
    closes: returns the read end as a buffered file, its descriptor and the thread."""
    r, w = os.pipe()
    assert capacity(r) == DEFAULT_PIPE

    def pump() -> None:
        with os.fdopen(w, "wb") as out:
            for i in range(0, len(data), piece):
                out.write(data[i : i + piece])

    thread = threading.Thread(target=pump)
    thread.start()
    return os.fdopen(r, "rb"), r, thread


def drain(into: List[bytes]) -> tuple[Any, int, threading.Thread]:
    """A pipe whose read end a thread reads to its end into ``into``: returns the write end as
    a buffered file, its descriptor and the thread."""
    r, w = os.pipe()

    def pump() -> None:
        with os.fdopen(r, "rb") as src:
            into.append(src.read())

    thread = threading.Thread(target=pump)
    thread.start()
    return os.fdopen(w, "wb"), w, thread


def test_put_file_from_a_pipe_stores_every_byte_and_grows_the_pipe(db_path):
    data = blob(5 * 1_048_576 + 12_345)
    with KVault(db_path) as vault:
        reader, fd, thread = feed(data)
        with reader:
            assert vault.put_file("clip", reader) == len(data)
            assert capacity(fd) == 1 << 20
        thread.join()
        assert vault["clip"] == data


def test_the_pipe_grows_to_the_chunk_size_and_is_never_shrunk(db_path):
    data = blob(700_000, seed=1)
    with KVault(db_path) as vault:
        reader, fd, thread = feed(data)
        with reader:
            assert vault.put_file("a", reader, chunk_size=256 << 10) == len(data)
            assert capacity(fd) == 256 << 10
        thread.join()
        reader, fd, thread = feed(data)
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
        with reader:
            assert vault.put_file("b", reader, chunk_size=64 << 10) == len(data)
            assert capacity(fd) == 1 << 20
        thread.join()
        assert vault.get_many(["a", "b"]) == [data, data]


def test_get_to_file_into_a_pipe_writes_every_byte_and_grows_the_pipe(db_path):
    data = blob(3 * 1_048_576 + 7, seed=2)
    received: List[bytes] = []
    with KVault(db_path) as vault:
        vault["clip"] = data
        writer, fd, thread = drain(received)
        with writer:
            assert vault.get_to_file("clip", writer) == len(data)
            assert capacity(fd) == 1 << 20
        thread.join()
    assert received == [data]


def test_a_refused_growth_leaves_the_stream_working(db_path, monkeypatch):
    """Where the system refuses a larger pipe (a user over its pipe-memory limit gets EPERM),
    the value is still stored whole through the pipe as it is."""
    import fcntl

    real: Callable[..., Any] = fcntl.fcntl

    def refuse(fd: int, cmd: int, *args: Any) -> Any:
        if cmd == F_SETPIPE_SZ:
            raise PermissionError(1, "Operation not permitted")
        return real(fd, cmd, *args)

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    data = blob(2 * 1_048_576 + 1, seed=3)
    with KVault(db_path) as vault:
        reader, fd, thread = feed(data)
        with reader:
            assert vault.put_file("clip", reader) == len(data)
            assert capacity(fd) == DEFAULT_PIPE
        thread.join()
        assert vault["clip"] == data


def test_a_bad_chunk_size_is_refused_before_the_pipe_is_touched(db_path):
    with KVault(db_path) as vault:
        reader, fd, thread = feed(b"abc")
        with reader:
            with pytest.raises(InvalidArgument):
                vault.put_file("clip", reader, chunk_size=-1)
            assert capacity(fd) == DEFAULT_PIPE
            assert reader.read() == b"abc"
        thread.join()
        assert "clip" not in vault


def test_async_put_file_and_get_to_file_through_pipes(db_path):
    data = blob(2 * 1_048_576 + 99, seed=4)
    received: List[bytes] = []

    async def main() -> None:
        async with AsyncKVault(db_path) as vault:
            reader, rfd, feeder = feed(data)
            with reader:
                assert await vault.put_file("clip", reader) == len(data)
                assert capacity(rfd) == 1 << 20
            writer, wfd, drainer = drain(received)
            with writer:
                assert await vault.get_to_file("clip", writer) == len(data)
                assert capacity(wfd) == 1 << 20
            feeder.join()
            drainer.join()

    asyncio.run(main())
    assert received == [data]
